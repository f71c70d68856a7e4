"""``aiosite collectstatic``: copy every static file into ``static.root`` for production."""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated

import typer

from aiosite.apps import load_apps
from aiosite.cli.context import CliState
from aiosite.exceptions import CommandError
from aiosite.settings import project_relative
from aiosite.web.static import static_root
from aiosite.web.static_collect import Collected, collect, static_sources


def register(cli: typer.Typer) -> None:
    cli.command("collectstatic")(collectstatic)


def collectstatic(
    ctx: typer.Context,
    clear: Annotated[
        bool,
        typer.Option("--clear", help="Empty static.root first (drops files no longer used)."),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print warnings only: no progress, no summary.")
    ] = False,
) -> None:
    """Copy the static files of the project and its apps into static.root, under their
    plain and content-hashed names, and write the manifest production serves from."""
    from rich.console import Console
    from rich.markup import escape

    state: CliState = ctx.obj
    settings = state.settings()
    project_dir = settings.project_dir.resolve()
    sources = load_apps(settings).search_path("static")
    target = static_root(settings).resolve()
    shown_target = project_relative(target, project_dir)
    refuse_target(target, project_dir, [s.resolve() for s in sources], shown_target, clear=clear)
    started = time.monotonic()
    if clear and target.exists():
        _empty(target)

    def shown(path: Path) -> str:
        return project_relative(path, project_dir)

    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    files = static_sources(sources)
    with _progress(len(files), enabled=not quiet) as advance:
        result = collect(files, target, shown=shown, on_file=advance)
    for warning in result.warnings:
        errors.print(f"[yellow]warning:[/] {escape(warning)}")
    if not quiet:
        Console(highlight=False, soft_wrap=True).print(
            _summary(result, shown_target, time.monotonic() - started)
        )


def refuse_target(
    target: Path, project_dir: Path, sources: Sequence[Path], shown: str, *, clear: bool
) -> None:
    """CommandError when ``target`` is the project directory or above it, or a static
    folder, inside one or around one: collecting there would mix the copies with the
    sources, and --clear would delete them."""
    action = "--clear would delete" if clear else "collecting there would overwrite"
    fix = "set static.root to a folder of its own, e.g. static_root"
    if target == project_dir or project_dir.is_relative_to(target):
        what = "the project directory" if target == project_dir else "above the project"
        raise CommandError(f"static.root: {target} is {what}; {action} the project's files: {fix}")
    for source in sources:
        if target.is_relative_to(source) or source.is_relative_to(target):
            raise CommandError(
                f"static.root: {shown} holds or is inside the static folder "
                f"{project_relative(source, project_dir)}; {action} the source files: {fix}"
            )


def _empty(target: Path) -> None:
    if not target.is_dir():
        raise CommandError(f"static.root: {target} is not a directory; remove it or set another")
    for entry in target.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


@contextlib.contextmanager
def _progress(total: int, *, enabled: bool) -> Iterator[Callable[[str], None] | None]:
    """A Rich progress bar on a terminal (its advance function); nothing otherwise."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task("collecting", total=total)
        yield lambda _: bar.advance(task)


def _summary(result: Collected, shown_target: str, seconds: float) -> str:
    return (
        f"collected {result.files} files ({result.unchanged} unchanged) into "
        f"{shown_target.rstrip('/')}/ in {seconds:.2f} s"
    )
