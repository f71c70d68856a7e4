"""``aiosite new`` and ``aiosite startapp``: write a project, or an app inside one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aiosite.cli.context import CliState, shown_path
from aiosite.exceptions import CommandError
from aiosite.scaffold import check_project_name, create_app, create_project


def register(cli: typer.Typer) -> None:
    cli.command("new")(new)
    cli.command("startapp")(startapp)


def new(
    name: Annotated[str, typer.Argument(help="The project's Python package name, e.g. mysite.")],
    directory: Annotated[
        Path | None,
        typer.Argument(help="Where to write it; must not exist or be empty (default: ./NAME)."),
    ] = None,
) -> None:
    """Create a new project: settings, a package with its first app, and passing tests."""
    check_project_name(name)
    target = create_project(name, directory if directory is not None else Path(name))
    shown = shown_path(target)
    typer.echo(f"Created the project {name!r} in {shown}/\n\nNext steps:")
    if target != Path.cwd().resolve():
        typer.echo(f"  cd {shown}")
    typer.echo(
        "  aiosite db migrate       # create the database (var/db.sqlite3)\n"
        "  aiosite run              # serve http://127.0.0.1:8080/ with autoreload\n"
        "  python -m pytest         # run the project's tests\n"
        "  aiosite startapp blog    # add an app, served at /blog/; models in blog/models.py\n"
        "  aiosite db makemigrations -m 'blog'   # after changing models, then db migrate\n"
        "  aiosite routes           # list the routes; `aiosite check` validates the project"
    )


def startapp(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The app's package name, e.g. blog.")],
) -> None:
    """Create an app in the project package and add it to apps: in config/default.yaml."""
    state: CliState = ctx.obj
    project_dir = state.project_dir()
    settings = state.settings()
    package = settings.site.package
    if not package:
        raise CommandError(
            "site.package is not set in config/default.yaml; startapp writes the app into "
            "the project package, so name it there (e.g. `site: {package: mysite}`)"
        )
    app_dir = create_app(project_dir, package, name, listed=settings.apps)
    typer.echo(
        f"Created the app {name!r} in {shown_path(app_dir)}/ and added {package}.{name} to apps: "
        f"in config/default.yaml.\nIts index page is served at /{name}/ (route {name}:index)."
    )
    _warn_if_overridden(project_dir)


def _warn_if_overridden(project_dir: Path) -> None:
    # Another settings layer that sets apps: replaces default.yaml's list entirely.
    for path in sorted((project_dir / "config").glob("*.yaml")):
        if path.name == "default.yaml":
            continue
        text = path.read_text(encoding="utf-8")
        if any(line.startswith("apps:") for line in text.splitlines()):
            typer.echo(
                f"note: config/{path.name} sets its own apps:, which replaces the list in "
                "default.yaml; add the app there too",
                err=True,
            )
