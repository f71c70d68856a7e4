"""``aiosite routes`` and ``aiosite check [--deploy]``: look at a project without serving it."""

from __future__ import annotations

from typing import Annotated

import typer
from aiohttp import hdrs, web
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from aiosite.checks import run_checks
from aiosite.cli.context import CliState
from aiosite.site import create_site


def register(cli: typer.Typer) -> None:
    cli.command("routes")(routes)
    cli.command("check")(check)


def routes(ctx: typer.Context) -> None:
    """List every route the site serves: method, path, name and handler."""
    state: CliState = ctx.obj
    app = create_site(state.settings())
    table = Table("Method", "Path", "Name", "Handler", box=None, header_style="bold")
    for method, path, name, handler in route_rows(app):
        table.add_row(method, escape(path), name, escape(handler))
    Console(width=200).print(table)


def route_rows(app: web.Application) -> list[tuple[str, str, str, str]]:
    """Rows for every route on the router, sub-applications included; HEAD routes that
    aiohttp adds beside GET are left out."""
    rows = []
    for resource in app.router.resources():
        if isinstance(resource, web.PrefixedSubAppResource):
            # aiohttp already put the prefix on the sub-application's resources.
            rows.extend(route_rows(resource._app))
            continue
        for route in resource:
            if route.method == hdrs.METH_HEAD and any(
                other.method == hdrs.METH_GET for other in resource
            ):
                continue
            handler = getattr(route.handler, "__wrapped__", route.handler)
            where = f"{handler.__module__}.{getattr(handler, '__qualname__', handler)}"
            rows.append((route.method, resource.canonical, resource.name or "", where))
    return rows


def check(
    ctx: typer.Context,
    deploy: Annotated[
        bool,
        typer.Option(
            "--deploy",
            help="Also check the settings are fit for a public site (debug, secret key, "
            "allowed hosts, cookies, headers); use with --env production.",
        ),
    ] = False,
) -> None:
    """Validate settings, apps, routes and templates; exit 1 listing any problem."""
    state: CliState = ctx.obj
    settings = state.settings()
    problems = run_checks(settings, deploy=deploy)
    console = Console(highlight=False, soft_wrap=True)
    if deploy and settings.is_local:
        console.print(
            f"note: these are the {settings.env!r} settings; check the ones you deploy "
            "with `aiosite --env production check --deploy`"
        )
    for problem in problems:
        colour = "red" if problem.level == "error" else "yellow"
        console.print(f"[{colour}]{problem.level}:[/] {escape(problem.message)}")
    errors = sum(problem.level == "error" for problem in problems)
    if errors:
        console.print(f"{errors} error(s), {len(problems) - errors} warning(s)")
        raise typer.Exit(1)
    console.print(f"no errors ({len(problems)} warning(s))" if problems else "no problems found")
