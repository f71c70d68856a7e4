"""``aiosite db ...``: migrations (Alembic), the database's own shell, fixtures.

Alembic is imported by the commands that use it: it is a heavy import that
`aiosite run` and every other command would otherwise pay for.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from aiosite.apps import load_apps
from aiosite.cli.context import CliState, shown_path
from aiosite.db.config import DatabaseSettings
from aiosite.db.engine import Database, is_memory_sqlite, resolve_url
from aiosite.exceptions import CommandError
from aiosite.scaffold import create_migrations

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

    from aiosite.db.fixtures import FixtureReport
    from aiosite.settings import Settings

db = typer.Typer(
    name="db",
    help="The database: migrations (Alembic), its shell, fixtures.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

# Package names to suggest when a database's shell is not installed.
_CLIENTS = {
    "sqlite3": "sqlite3 (Debian/Ubuntu: apt install sqlite3; macOS: brew install sqlite)",
    "psql": "the PostgreSQL client (Debian/Ubuntu: apt install postgresql-client; "
    "macOS: brew install libpq)",
}


def register(cli: typer.Typer) -> None:
    cli.add_typer(db)


def _settings(ctx: typer.Context) -> Settings:
    state: CliState = ctx.obj
    return state.settings()


@db.command("init")
def init(ctx: typer.Context) -> None:
    """Write the migrations/ folder into a project that has none."""
    state: CliState = ctx.obj
    target = create_migrations(state.project_dir())
    typer.echo(f"Created {shown_path(target)}/; next: aiosite db makemigrations -m initial")


@db.command("makemigrations")
def makemigrations(
    ctx: typer.Context,
    message: Annotated[
        str, typer.Option("--message", "-m", help="What changed; names the migration file.")
    ] = "",
    empty: Annotated[
        bool,
        typer.Option("--empty", help="Write a migration with nothing in it, to fill in by hand."),
    ] = False,
) -> None:
    """Compare the models with the database and write a migration for the changes."""
    from aiosite.db import migrations

    settings = _settings(ctx)
    path = migrations.makemigrations(settings, message or "changes", empty=empty)
    if path is None:
        typer.echo("No changes detected.")
        return
    typer.echo(f"Created {shown_path(path)}\nReview it, then apply it with `aiosite db migrate`.")


@db.command("migrate")
def migrate(
    ctx: typer.Context,
    revision: Annotated[
        str, typer.Argument(help="The revision to upgrade to (default: the newest).")
    ] = "head",
    sql: Annotated[
        bool, typer.Option("--sql", help="Print the SQL instead of running it.")
    ] = False,
) -> None:
    """Apply the migrations (the database, and its schema on PostgreSQL, is created)."""
    from aiosite.db import migrations

    settings = _settings(ctx)
    steps = migrations.migrate(settings, revision, sql=sql)
    if sql:
        return
    for step in steps:
        typer.echo(f"Applied {step.revision}  {step.message}")
    if not steps:
        typer.echo("No migrations to apply; the database is up to date.")


@db.command(
    "downgrade",
    # `downgrade -1` is a revision, not an option.
    context_settings={"ignore_unknown_options": True},
)
def downgrade(
    ctx: typer.Context,
    revision: Annotated[
        str,
        typer.Argument(help="-1 (the last one), -N, base (all of them) or a revision id."),
    ],
) -> None:
    """Revert migrations down to REVISION."""
    from aiosite.db import migrations

    steps = migrations.downgrade(_settings(ctx), revision)
    for step in steps:
        typer.echo(f"Reverted {step.revision}  {step.message}")
    if not steps:
        typer.echo(f"Nothing to revert; the database is already at {revision}.")


@db.command("history")
def history(ctx: typer.Context) -> None:
    """List the migrations, newest first; the database's current one is marked."""
    from aiosite.db import migrations

    output = migrations.history(_settings(ctx))
    typer.echo(output.rstrip("\n") if output.strip() else "No migrations yet.")


@db.command("current")
def current(ctx: typer.Context) -> None:
    """Show the migration the database is at."""
    from aiosite.db import migrations

    output = migrations.current(_settings(ctx))
    typer.echo(output.rstrip("\n") if output.strip() else "No migration applied.")


@db.command("check")
def check(ctx: typer.Context) -> None:
    """Exit 1 when the models have changes that no migration covers."""
    from aiosite.db import migrations

    changes = migrations.check(_settings(ctx))
    if not changes:
        typer.echo("No changes detected; the migrations cover the models.")
        return
    typer.echo("The models have changes without a migration:")
    for change in changes:
        typer.echo(f"  {change}")
    typer.echo('Write one with `aiosite db makemigrations -m "what changed"`.')
    raise typer.Exit(1)


@db.command("shell")
def shell(
    ctx: typer.Context,
    arguments: Annotated[
        list[str] | None,
        typer.Argument(
            help="More arguments for the client, after --: db shell -- -c 'SELECT 1'",
            metavar="ARGS",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Open the database's own shell (sqlite3 or psql) on database.url."""
    settings = _settings(ctx)
    url = resolve_url(settings.section(DatabaseSettings).url, settings.project_dir)
    args, env = shell_command(url, settings.section(DatabaseSettings).schema_name)
    raise typer.Exit(_run_client([*args, *(arguments or [])], env))


def shell_command(url: URL, schema_name: str | None = None) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of the database's shell. A password goes in
    PGPASSWORD, never in the arguments, where any user on the machine could read it."""
    env = dict(os.environ)
    if url.get_backend_name() == "sqlite":
        args = [_client("sqlite3")]
        if not is_memory_sqlite(url) and url.database:
            args.append(url.database)
        return args, env
    if url.get_backend_name() != "postgresql":
        raise CommandError(f"no shell for {url.get_backend_name()} databases")
    args = [_client("psql")]
    for flag, value in (("--host", url.host), ("--port", url.port), ("--username", url.username)):
        if value is not None:
            args += [flag, str(value)]
    if url.database:
        args += ["--dbname", url.database]
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    # asyncpg's `ssl=true` means libpq's `require`; its other values are libpq's modes.
    sslmode = url.query.get("sslmode") or url.query.get("ssl")
    if isinstance(sslmode, str):
        env["PGSSLMODE"] = {"true": "require", "false": "disable"}.get(sslmode.lower(), sslmode)
    if schema_name:
        env["PGOPTIONS"] = f"{env.get('PGOPTIONS', '')} -c search_path={schema_name}".strip()
    return args, env


def _client(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise CommandError(f"the {name} command is not installed; install {_CLIENTS[name]}")
    return found


def _run_client(args: list[str], env: dict[str, str]) -> int:
    # Ctrl-C belongs to the shell (psql cancels the running query); it must not stop us
    # and leave the shell orphaned.
    with _sigint_ignored():
        return subprocess.run(args, env=env, check=False).returncode  # noqa: S603


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@db.command("seed")
def seed(
    ctx: typer.Context,
    files: Annotated[
        list[Path], typer.Argument(help="Fixture files (.yaml, .yml, .json).", show_default=False)
    ],
) -> None:
    """Load fixture files: rows are created, or updated when their key exists."""
    settings = _settings(ctx)
    report = asyncio.run(_seed(settings, [_fixture_path(path, settings) for path in files]))
    for model in {**report.created, **report.updated, **report.unchanged}:
        typer.echo(
            f"{model}: {report.created.get(model, 0)} created, "
            f"{report.updated.get(model, 0)} updated, {report.unchanged.get(model, 0)} unchanged"
        )


def _fixture_path(path: Path, settings: Settings) -> Path:
    """As given when it exists from here, else relative to the project."""
    if path.is_absolute() or path.exists():
        return path
    in_project = settings.project_dir / path
    return in_project if in_project.exists() else path


async def _seed(settings: Settings, paths: Sequence[Path]) -> FixtureReport:
    from aiosite.db.fixtures import load_fixture_files

    registry = load_apps(settings)
    database = Database(settings)
    try:
        await database.check()
        return await load_fixture_files(database, registry, paths)
    finally:
        await database.dispose()
