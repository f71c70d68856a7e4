"""The ``aiosite`` command line: one module per command group."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from aiosite.cli import inspect, project, run
from aiosite.cli.context import CliState
from aiosite.exceptions import AiositeError

cli = typer.Typer(
    name="aiosite",
    help="aiosite: a batteries-included async web framework on aiohttp.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@cli.callback()
def _options(
    ctx: typer.Context,
    project: Annotated[
        Path | None,
        typer.Option("--project", "-p", help="The project directory (default: found from here).",
                     envvar="AIOSITE_PROJECT"),
    ] = None,
    env: Annotated[
        str | None,
        typer.Option("--env", "-e", help="Settings environment (default: $AIOSITE_ENV or "
                     "development)."),
    ] = None,
) -> None:
    if ctx.obj is None or not isinstance(ctx.obj, CliState):
        ctx.obj = CliState()
    if project is not None:
        ctx.obj.project = project
    if env is not None:
        ctx.obj.env = env


for module in (project, run, inspect):
    module.register(cli)


def main(argv: Sequence[str] | None = None, *, project: Path | None = None) -> None:
    """Run the CLI; ``project`` pins the project (``python -m mysite`` passes its own).

    Usage errors exit 2 (Click's convention); so does any error of ours, printed as one
    line without a traceback.
    """
    state = CliState(project=project)
    try:
        cli(args=list(argv) if argv is not None else None, obj=state, prog_name="aiosite")
    except AiositeError as exc:
        Console(stderr=True, highlight=False, soft_wrap=True).print(
            f"[bold red]error:[/] {escape(str(exc))}"
        )
        sys.exit(2)
