"""``aiosite routes`` and ``aiosite check [--deploy]``: look at a project without serving it."""

from __future__ import annotations

import re
from typing import Annotated

import typer
from aiohttp import hdrs, web

from aiosite.checks import run_checks
from aiosite.cli.context import CliState
from aiosite.keys import NO_ROUTE
from aiosite.site import create_site
from aiosite.web.core import CORE


def register(cli: typer.Typer) -> None:
    cli.command("routes")(routes)
    cli.command("check")(check)


def routes(
    ctx: typer.Context,
    hooks: Annotated[
        bool,
        typer.Option(
            "--hooks",
            help="Also list the hooks each route's requests run (docs/extending.md).",
        ),
    ] = False,
) -> None:
    """List every route the site serves: method, path, name and handler."""
    # Rich is imported by the commands that print with it: `aiosite run` never does.
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    state: CliState = ctx.obj
    app = create_site(state.settings())
    columns = ["Method", "Path", "Name", "Handler"] + (["Hooks"] if hooks else [])
    table = Table(*columns, box=None, header_style="bold")
    for method, path, name, handler, route_hooks in route_rows(app):
        row = [method, escape(path), name, escape(handler)]
        table.add_row(*row, *([escape(route_hooks)] if hooks else []))
    Console(width=200).print(table)


def route_rows(app: web.Application) -> list[tuple[str, str, str, str, str]]:
    """Rows for every route on the router, sub-applications included; HEAD routes that
    aiohttp adds beside GET, and the core's fallback, are left out. The last column
    names the hooks the route's requests run: request hooks (before), handler wrappers
    (around) and response hooks (after)."""
    rows = []
    core = app.get(CORE)
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
            if getattr(handler, NO_ROUTE, False):
                continue  # the core's fallback: it answers what no route matches
            where = f"{handler.__module__}.{getattr(handler, '__qualname__', handler)}"
            names = core.hook_names(app, route) if core is not None else {}
            described = "; ".join(
                f"{label}: {', '.join(names[kind])}"
                for kind, label in (
                    ("request", "before"),
                    ("wrapper", "around"),
                    ("response", "after"),
                )
                if names.get(kind)
            )
            rows.append(
                (
                    route.method,
                    route_pattern(resource),
                    resource.name or "",
                    where,
                    described,
                )
            )
    return rows


def route_pattern(resource: web.AbstractResource) -> str:
    """The path as it was written: ``/blog/{slug}``, ``/blog/{page:\\d+}``. aiohttp keeps
    only a formatter and the compiled regex; a placeholder's own regex is read back from
    its group in the latter (``[^{}/]+`` is the default, not shown)."""
    info = resource.get_info()
    formatter, pattern = info.get("formatter"), info.get("pattern")
    if not isinstance(formatter, str) or not isinstance(pattern, re.Pattern):
        return resource.canonical
    regex = pattern.pattern

    def placeholder(match: re.Match[str]) -> str:
        name = match.group(1)
        start = regex.find(f"(?P<{name}>")
        if start < 0:
            return match.group(0)
        body = _group_body(regex, start + len(f"(?P<{name}>"))
        return f"{{{name}}}" if body in (None, _DEFAULT_PLACEHOLDER) else f"{{{name}:{body}}}"

    return re.sub(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", placeholder, formatter)


_DEFAULT_PLACEHOLDER = "[^{}/]+"


def _group_body(regex: str, start: int) -> str | None:
    """The text of the group that opens before ``start``, up to its closing parenthesis."""
    depth, index, in_class = 1, start, False
    while index < len(regex):
        char = regex[index]
        if char == "\\":
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            # A "]" right after "[" or "[^" is a member, not the class's end.
            if regex[index + 1 : index + 2] == "]":
                index += 1
            elif regex[index + 1 : index + 3] == "^]":
                index += 2
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return regex[start:index]
        index += 1
    return None


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
    from rich.console import Console
    from rich.markup import escape

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
