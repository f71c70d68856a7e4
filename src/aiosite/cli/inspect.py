"""``aiosite routes`` and ``aiosite check``: look at a project without serving it."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from aiosite.checks import run_checks
from aiosite.cli.context import CliState
from aiosite.keys import ROUTES, STATIC_FILES
from aiosite.site import create_site
from aiosite.web.static import ROUTE_NAME as STATIC_ROUTE


def register(cli: typer.Typer) -> None:
    cli.command("routes")(routes)
    cli.command("check")(check)


def routes(ctx: typer.Context) -> None:
    """List every route: method, path, name and handler."""
    state: CliState = ctx.obj
    app = create_site(state.settings())
    table = Table("Method", "Path", "Name", "Handler", box=None, header_style="bold")
    for route in app[ROUTES].mounted:
        handler = route.handler
        where = f"{handler.__module__}.{getattr(handler, '__qualname__', handler)}"
        table.add_row(route.method, escape(route.path), route.name or "", where)
    if STATIC_FILES in app and state.settings().static.serve:
        table.add_row(
            "GET",
            escape(state.settings().static.url + "{path}"),
            STATIC_ROUTE,
            "aiosite static files",
        )
    Console(width=200).print(table)


def check(ctx: typer.Context) -> None:
    """Validate settings, apps, routes and templates; exit 1 listing any problem."""
    state: CliState = ctx.obj
    problems = run_checks(state.settings())
    console = Console(highlight=False, soft_wrap=True)
    for problem in problems:
        colour = "red" if problem.level == "error" else "yellow"
        console.print(f"[{colour}]{problem.level}:[/] {escape(problem.message)}")
    errors = sum(problem.level == "error" for problem in problems)
    if errors:
        console.print(f"{errors} error(s), {len(problems) - errors} warning(s)")
        raise typer.Exit(1)
    console.print(f"no errors ({len(problems)} warning(s))" if problems else "no problems found")
