"""The site's database: one async engine and session factory, built from ``database:``.

A ``Database`` is what hangs on the application under ``keys.DATABASE``; CLI commands,
scripts and tests build their own with ``Database(settings)`` and ``await db.dispose()``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web
from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import StaticPool

from aiosite.db.config import DatabaseSettings
from aiosite.db.errors import connection_unsafe
from aiosite.db.fast_path import FastPath
from aiosite.db.lazy_begin import install_lazy_begin
from aiosite.db.orm import SiteSession, session_class
from aiosite.db.retry import IsolationLevel, name_of, run_attempts
from aiosite.exceptions import DatabaseUnavailable, ImproperlyConfigured, one_line
from aiosite.keys import state_of
from aiosite.settings import Settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

logger = logging.getLogger("aiosite.db")

T = TypeVar("T")


class Database:
    """An engine, its pool and a session factory for one database URL."""

    def __init__(self, settings: Settings) -> None:
        self.settings: DatabaseSettings = settings.section(DatabaseSettings)
        self.debug = settings.debug.enabled
        self.url: URL = resolve_url(self.settings.url, settings.project_dir)
        self.engine: AsyncEngine = create_async_engine(self.url, **_engine_options(self))
        _install_connect_hooks(self)
        # PostgreSQL: BEGIN at the first write, so that reading costs no BEGIN and COMMIT.
        if self.settings.begin_at_first_write:
            install_lazy_begin(self.engine.sync_engine)
        # Objects stay usable after commit: the request's session commits after the
        # handler returns, and async code cannot lazy-load expired attributes.
        # SiteSession: an AsyncSession with a cheaper get() (aiosite.db.orm).
        self.sessionmaker: async_sessionmaker[SiteSession] = async_sessionmaker(
            self.engine, expire_on_commit=False, class_=session_class()
        )
        # Hot queries on the driver connection (its PostgreSQL pool opens on first use).
        self.fast = FastPath(self.engine, self.url, self.settings)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.url.get_backend_name()

    @property
    def safe_url(self) -> str:
        """The URL without its password, for messages and logs."""
        return self.url.render_as_string(hide_password=True)

    def session(self) -> SiteSession:
        """A new session; the caller commits and closes it (or use ``transaction()``)."""
        return self.sessionmaker()

    @asynccontextmanager
    async def transaction(
        self, *, isolation_level: IsolationLevel | None = None
    ) -> AsyncIterator[AsyncSession]:
        """A session that commits when the block ends normally and rolls back otherwise;
        at ``isolation_level`` on PostgreSQL (on SQLite every transaction is serializable)."""
        async with self.sessionmaker() as session:
            try:
                if isolation_level is not None and self.dialect == "postgresql":
                    await session.connection(execution_options={"isolation_level": isolation_level})
                yield session
            except BaseException as exc:
                await end_failed_session(session, exc)
                raise
            try:
                await session.commit()
            except BaseException as exc:
                await end_failed_session(session, exc)
                raise

    async def run_transaction(
        self,
        work: Callable[[AsyncSession], Awaitable[T]],
        *,
        attempts: int = 3,
        isolation_level: IsolationLevel | None = None,
    ) -> T:
        """``await work(session)`` in a transaction (and session) of its own, committed
        before this returns; run again in a new one, after a short random wait, when it
        ends in a deadlock or serialization failure, up to ``attempts`` runs in all (the
        last failure is raised). ``work``'s result is returned. See
        ``aiosite.db.transactions.run_transaction`` for a handler's use."""

        async def attempt() -> T:
            async with self.transaction(isolation_level=isolation_level) as session:
                return await work(session)

        return await run_attempts(attempt, attempts=attempts, what=name_of(work))

    async def check(self) -> None:
        """Connect once; ImproperlyConfigured naming the setting when that fails."""
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except (DatabaseUnavailable, DBAPIError) as exc:
            cause = exc.__cause__ if isinstance(exc, DatabaseUnavailable) else exc.orig
            raise ImproperlyConfigured(
                f"database.url: cannot connect to {self.safe_url}: {one_line(cause or exc)}"
            ) from None

    async def create_schema(self) -> None:
        """Create ``database.schema_name`` if it is set and missing (PostgreSQL)."""
        if self.settings.schema_name:
            async with self.engine.begin() as connection:
                name = connection.dialect.identifier_preparer.quote(self.settings.schema_name)
                await connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {name}"))

    async def drop_schema(self) -> None:
        """Drop ``database.schema_name`` and everything in it (test databases)."""
        if self.settings.schema_name:
            async with self.engine.begin() as connection:
                name = connection.dialect.identifier_preparer.quote(self.settings.schema_name)
                await connection.execute(text(f"DROP SCHEMA IF EXISTS {name} CASCADE"))

    async def dispose(self) -> None:
        await self.fast.close()
        await self.engine.dispose()


async def end_failed_session(session: AsyncSession, exc: BaseException) -> None:
    """End ``session`` after ``exc``: roll back and close; invalidate its connection
    (close it; the server rolls back its transaction) when ``exc`` left it unsafe to
    use (``aiosite.db.errors.connection_unsafe``: cancelled, or lost or mid-operation
    in the driver) or when the rollback fails.

    asyncpg runs one operation at a time per connection: a ROLLBACK sent while one is
    still in progress fails with ``InternalClientError: cannot switch to state 15;
    another operation is in progress``, as seen once during an outage (and the pool's
    reset-on-return would send another). Never raises: the error that ended the session
    is the news.
    """
    try:
        if connection_unsafe(exc):
            await session.invalidate()
            return
        try:
            await session.rollback()
        except Exception:
            logger.debug("rolling back after %s failed", type(exc).__name__, exc_info=True)
            await session.invalidate()
            return
    except Exception:
        logger.debug("invalidating the connection failed", exc_info=True)
    await close_quietly(session)


async def close_quietly(session: AsyncSession) -> None:
    """Close ``session``; a failure is logged at DEBUG, never raised (the request's
    answer, or the error that ended the session, is what matters)."""
    try:
        await session.close()
    except Exception:
        logger.debug("closing the session failed", exc_info=True)


DATABASE: web.AppKey[Database] = web.AppKey("aiosite.database", Database)


def database_of(target: web.Request | web.Application) -> Database:
    """The site's database, from a request or the (started) application."""
    try:
        database: Database = state_of(target)[DATABASE]
    except KeyError:
        raise RuntimeError(
            "the site's database is opened when the application starts; "
            "use it from handlers, startup hooks or a started test client"
        ) from None
    return database


def resolve_url(url: str, project_dir: Path) -> URL:
    """The URL with a relative SQLite path made relative to the project directory."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return parsed
    path = Path(parsed.database)
    if parsed.database == ":memory:" or parsed.database.startswith("file:"):
        return parsed
    if not path.is_absolute():
        path = project_dir / path
    return parsed.set(database=str(path))


def is_memory_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def _engine_options(database: Database) -> dict[str, Any]:
    settings = database.settings
    # Statement parameters stay out of exception messages (and so out of logs), since
    # they may be passwords or personal data; the debug page may show them.
    options: dict[str, Any] = {
        "echo": settings.echo,
        "hide_parameters": not database.debug,
    }
    if database.dialect == "sqlite":
        # sqlite3's own wait for a locked database, in seconds.
        options["connect_args"] = {"timeout": settings.connect_timeout}
        if is_memory_sqlite(database.url):
            # One shared connection, or each connection would see its own empty database.
            options["poolclass"] = StaticPool
            return options
    else:
        server_settings = {}
        if settings.schema_name:
            server_settings["search_path"] = settings.schema_name
        options["connect_args"] = {
            "timeout": settings.connect_timeout,
            "server_settings": server_settings,
        }
    options.update(
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout,
        pool_recycle=settings.pool_recycle,
        pool_pre_ping=settings.pool_pre_ping,
    )
    return options


def _install_connect_hooks(database: Database) -> None:
    sync_engine = database.engine.sync_engine
    is_sqlite = database.dialect == "sqlite"

    @event.listens_for(sync_engine, "do_connect")
    def _connect(dialect: Any, record: Any, cargs: Any, cparams: Any) -> Any:
        # Connection failures surface as many types (OSError, TimeoutError, driver
        # errors); one type lets the request layer answer 503 for exactly these.
        try:
            if is_sqlite and not is_memory_sqlite(database.url) and database.url.database:
                Path(database.url.database).parent.mkdir(parents=True, exist_ok=True)
            return dialect.connect(*cargs, **cparams)
        except Exception as exc:
            raise DatabaseUnavailable(
                f"cannot connect to {database.safe_url}: {one_line(exc)}"
            ) from exc

    if database.url.get_driver_name() == "asyncpg":
        event.listen(sync_engine, "checkout", _discard_closed)

    if is_sqlite:

        @event.listens_for(sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, record: Any) -> None:
            cursor = dbapi_connection.cursor()
            # WAL lets readers work while one writer commits; foreign keys are off by
            # default in SQLite, and a site expects them enforced.
            if not is_memory_sqlite(database.url):
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()


def _discard_closed(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """The pool's ``checkout`` event (asyncpg): a pooled connection that was closed while
    it sat idle is replaced before the request gets it.

    A database that went away (a restart, a failover, a proxy cut) closes every idle
    connection; asyncpg saw each socket close (``is_closed()`` asks its protocol, no
    I/O), but the pool would still hand them out, and the first request on each failed
    (a 503, ``/readyz`` "connection is closed") after the database was back.
    ``DisconnectionError`` makes the pool discard the connection and connect afresh in
    its place, once; a failed connect is ``DatabaseUnavailable`` (``do_connect``
    above), a 503 within ``database.connect_timeout``, as before. A round trip per
    checkout (``database.pool_pre_ping``) would also catch a connection cut without a
    word (no FIN or RST), at the price of a round trip per request.
    """
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the connection was closed while it was in the pool")
