"""What the database battery reports to ``/readyz`` and ``/metrics`` (aiosite.probes):
the database answers, its schema is at the migrations' head, and its pool's use."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from aiohttp import web
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from aiosite.db.engine import DATABASE, Database
from aiosite.exceptions import DatabaseUnavailable, one_line
from aiosite.probes import MetricSample
from aiosite.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


class NotReady(Exception):
    """Why a readiness check fails, in words for the one who deploys the site."""


def _database(app: web.Application) -> Database:
    try:
        return app[DATABASE]
    except KeyError:
        raise NotReady("the site has not opened its database (it is starting)") from None


async def database_answers(app: web.Application) -> None:
    """``SELECT 1`` through the site's engine (and its pool)."""
    try:
        async with _database(app).engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except DatabaseUnavailable as exc:
        raise NotReady(str(exc)) from None
    except DBAPIError as exc:
        raise NotReady(one_line(exc.orig)) from None


def has_migrations(settings: Settings) -> bool:
    """Whether the project has Alembic migrations (``aiosite.db.migrations``, which
    imports Alembic, names the folder too)."""
    return (settings.project_dir / "migrations" / "env.py").is_file()


class MigrationsAtHead:
    """The database's Alembic revision is the head of the project's migrations.

    The head is read from the migration scripts once, when the site starts; each probe
    reads only the version table.
    """

    def __init__(self, app: web.Application, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.heads: frozenset[str] | None = None
        self.unreadable: str | None = None

    async def load_heads(self, app: web.Application) -> None:
        """``app.on_startup``: the scripts' head(s), read once (imports Alembic). A
        folder Alembic cannot read fails the check rather than the start."""
        with _quiet_alembic():
            from alembic.script import ScriptDirectory

            from aiosite.db.migrations import alembic_config

            try:
                script = ScriptDirectory.from_config(alembic_config(self.settings))
                self.heads = frozenset(script.get_heads())
            except Exception as exc:
                self.unreadable = f"the migrations cannot be read: {one_line(exc)}"

    async def __call__(self) -> None:
        if self.unreadable is not None:
            raise NotReady(self.unreadable)
        if self.heads is None:
            raise NotReady("the site has not read its migrations yet (it is starting)")
        try:
            async with _database(self.app).engine.connect() as connection:
                current = frozenset(await connection.run_sync(_current_heads))
        except DatabaseUnavailable as exc:
            raise NotReady(str(exc)) from None
        except DBAPIError as exc:
            raise NotReady(one_line(exc.orig)) from None
        if current != self.heads:
            head = ", ".join(sorted(self.heads)) or "base (no migration)"
            at = ", ".join(sorted(current))
            where = f"the database is at {at}" if at else "the database has no migration applied"
            raise NotReady(f"{where}, the migrations' head is {head}; run `aiosite db migrate`")


@contextlib.contextmanager
def _quiet_alembic() -> Iterator[None]:
    """Alembic's INFO lines (a "setup plugin" line per plugin as its modules are
    imported, "Context impl ..." for each look at the version table) while the check
    reads heads: noise in every worker's start and every probe. Only for that moment:
    ``aiosite db`` commands log as configured."""
    alembic = logging.getLogger("alembic")
    level = alembic.level
    alembic.setLevel(max(logging.WARNING, alembic.getEffectiveLevel()))
    try:
        yield
    finally:
        alembic.setLevel(level)


def _current_heads(connection: Connection) -> tuple[str, ...]:
    from alembic.runtime.migration import MigrationContext

    # Each probe would log Alembic's "Context impl ..." lines.
    with _quiet_alembic():
        return MigrationContext.configure(connection).get_current_heads()


def pool_samples(app: web.Application) -> Iterable[MetricSample]:
    """The pool's connections in use and its size (none for SQLite in memory, whose one
    shared connection is no pool)."""
    database = app.get(DATABASE)
    if database is None:
        return ()
    pool = database.engine.pool
    checked_out = getattr(pool, "checkedout", None)
    size = getattr(pool, "size", None)
    if checked_out is None or size is None:
        return ()
    return (
        MetricSample(
            "aiosite_db_pool_checked_out",
            "Database connections in use (checked out of the pool).",
            "gauge",
            checked_out(),
        ),
        MetricSample(
            "aiosite_db_pool_size",
            "Database connections the pool keeps (database.pool_size).",
            "gauge",
            size(),
        ),
    )
