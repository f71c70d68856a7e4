"""The ``aiosite`` command line: one module per command group."""

from __future__ import annotations

import gc
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from aiosite.cli import db, deploy, inspect, project, run, serve, shell, static
from aiosite.cli.app_commands import AppCommandsGroup
from aiosite.cli.context import CliState
from aiosite.exceptions import AiositeError

cli = typer.Typer(
    name="aiosite",
    help="aiosite: a batteries-included async web framework on aiohttp.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    cls=AppCommandsGroup,
)


@cli.callback()
def _options(
    ctx: typer.Context,
    project: Annotated[
        Path | None,
        typer.Option(
            "--project",
            "-p",
            help="The project directory (default: found from here).",
            envvar="AIOSITE_PROJECT",
        ),
    ] = None,
    env: Annotated[
        str | None,
        typer.Option(
            "--env", "-e", help="Settings environment (default: $AIOSITE_ENV or development)."
        ),
    ] = None,
) -> None:
    if ctx.obj is None or not isinstance(ctx.obj, CliState):
        ctx.obj = CliState()
    if project is not None:
        ctx.obj.project = project
    if env is not None:
        ctx.obj.env = env


for module in (project, run, serve, inspect, db, shell, static, deploy):
    module.register(cli)


def main(argv: Sequence[str] | None = None, *, project: Path | None = None) -> None:
    """Run the CLI; ``project`` pins the project (``python -m mysite`` passes its own).

    Usage errors exit 2 (Click's convention); so does any error of ours, printed as one
    line without a traceback.
    """
    # The commands imported aiohttp, SQLAlchemy, pydantic and the batteries: some hundred
    # thousand objects that live as long as the process. Out of the cyclic collector's
    # way from here on (as the server puts what its startup built), its passes while the
    # site loads and starts walk only what those make: `aiosite run` answers its first
    # request about 90 ms sooner. In main, not at import: importing the CLI (a test, a
    # project's own code) freezes nothing.
    gc.freeze()
    args = list(sys.argv[1:] if argv is None else argv)
    named = _option_value(args, "--project", "-p")
    state = CliState(
        project=project or (Path(named) if named else None), env=_option_value(args, "--env", "-e")
    )
    try:
        cli(args=args, obj=state, prog_name="aiosite")
    except AiositeError as exc:
        # Imported here: rich costs every command (the server's process too) 25 ms.
        from rich.console import Console
        from rich.markup import escape

        Console(stderr=True, highlight=False, soft_wrap=True).print(
            f"[bold red]error:[/] {escape(str(exc))}"
        )
        sys.exit(2)


def _option_value(args: list[str], long: str, short: str) -> str | None:
    # Eager options such as --help run before Click stores --project; app commands
    # (listed in the help) need the project earlier than that.
    for index, arg in enumerate(args):
        if arg in (long, short) and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(long + "="):
            return arg.partition("=")[2]
    return None
