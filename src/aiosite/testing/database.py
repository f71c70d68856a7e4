"""The test run's own database: a fresh SQLite file or a PostgreSQL schema.

The site under test must never touch the development database, so the plugin points
the test settings at a database made for the run (``prepare``), migrated once like a
real one, and empties its tables before each test that asks for ``db``
(``empty_tables``). Tables are emptied, not rolled back, because requests run on the
site's own pooled connections and commit for real.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from sqlalchemy import MetaData, Table, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from aiosite.apps import load_apps
from aiosite.db.config import DatabaseSettings
from aiosite.db.engine import Database
from aiosite.db.models import site_metadata
from aiosite.exceptions import DatabaseUnavailable, ImproperlyConfigured, one_line
from aiosite.settings import Settings

SQLITE_FILE = "test.sqlite3"
MIGRATIONS_DIR = "migrations"


def isolated(settings: Settings, workdir: Path) -> Settings:
    """``settings`` pointed at a database of the run's own: a SQLite file in ``workdir``,
    or a new schema on the configured PostgreSQL database."""
    url = make_url(settings.section(DatabaseSettings).url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        path = (workdir / SQLITE_FILE).resolve()
        update: dict[str, object] = {
            "url": url.set(database=str(path)).render_as_string(hide_password=False),
            "schema_name": None,
        }
    elif backend == "postgresql":
        update = {"schema_name": f"test_{uuid.uuid4().hex[:8]}"}
    else:
        raise ImproperlyConfigured(
            f"database.url: the test database can be SQLite or PostgreSQL, not {backend!r}"
        )
    database = settings.section(DatabaseSettings).model_copy(update=update)
    return settings.model_copy(update={"database": database})


def prepare(settings: Settings) -> None:
    """Create the (isolated) test database and its tables, once per run.

    Synchronous: pytest sets up sync fixtures with no event loop running, and
    ``migrate`` runs its own.
    """
    asyncio.run(_create(settings))
    try:
        if has_migrations(settings):
            # Imported here: Alembic is a heavy import for runs that never need it.
            from aiosite.db.migrations import migrate

            migrate(settings)
        else:
            asyncio.run(_create_tables(settings))
    except BaseException:
        destroy(settings)
        raise


def destroy(settings: Settings) -> None:
    """Drop the test schema (PostgreSQL); a SQLite file goes with pytest's temp dirs."""
    asyncio.run(_drop(settings))


def has_migrations(settings: Settings) -> bool:
    """Whether the project has Alembic migrations to build its tables with."""
    migrations = settings.project_dir / MIGRATIONS_DIR
    versions = migrations / "versions"
    return (migrations / "env.py").is_file() and any(versions.glob("*.py"))


def metadata_of(settings: Settings) -> MetaData:
    """The tables of the apps the site lists."""
    return site_metadata(load_apps(settings))


async def empty_tables(database: Database, metadata: MetaData) -> None:
    """Delete every row of the site's tables and restart their id sequences."""
    async with database.engine.begin() as connection:
        existing = await connection.run_sync(_table_names)
        # A model without a migration has no table; the test that uses it fails with
        # the database's own "no such table", not here.
        tables = [table for table in metadata.sorted_tables if table.name in existing]
        if not tables:
            return
        if database.dialect == "postgresql":
            await _truncate(connection, tables)
        else:
            await _delete_sqlite(connection, tables)


async def _create(settings: Settings) -> None:
    database = Database(settings)
    try:
        await database.check()
        try:
            await database.create_schema()
        except (DatabaseUnavailable, DBAPIError) as exc:
            cause = (exc.orig if isinstance(exc, DBAPIError) else None) or exc
            raise ImproperlyConfigured(
                f"database.url: cannot create the schema {database.settings.schema_name!r} "
                f"on {database.safe_url}: {one_line(cause)}"
            ) from None
    finally:
        await database.dispose()


async def _create_tables(settings: Settings) -> None:
    metadata = metadata_of(settings)
    database = Database(settings)
    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
    finally:
        await database.dispose()


async def _drop(settings: Settings) -> None:
    database = Database(settings)
    try:
        await database.drop_schema()
    finally:
        await database.dispose()


def _table_names(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def _truncate(connection: AsyncConnection, tables: list[Table]) -> None:
    quote = connection.dialect.identifier_preparer.format_table
    names = ", ".join(quote(table) for table in tables)
    await connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


async def _delete_sqlite(connection: AsyncConnection, tables: list[Table]) -> None:
    # Dependants first; deferring the foreign keys to the commit covers cycles.
    await connection.execute(text("PRAGMA defer_foreign_keys = ON"))
    for table in reversed(tables):
        await connection.execute(table.delete())
    sequence = await connection.execute(
        text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'")
    )
    if sequence.first() is not None:
        await connection.execute(text("DELETE FROM sqlite_sequence"))
