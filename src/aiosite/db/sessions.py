"""Request-scoped sessions: one ``AsyncSession`` per request, made on first use.

``db_session(request)`` creates the session the first time a request asks for it; the
session takes a pooled connection only when it first runs a query. A request that never
asks pays nothing. The session registers a request finalizer, which the core
calls when the handler is done: commit when it returned (or raised a redirect or other
non-error HTTP exception), rollback when it raised, and always close.
"""

from __future__ import annotations

import functools
import logging
from contextlib import AbstractAsyncContextManager

import asyncpg
from aiohttp import web
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncSession

from aiosite.db.engine import database_of
from aiosite.db.fast import FastPath
from aiosite.exceptions import DatabaseUnavailable, one_line
from aiosite.keys import DB_SESSION, add_request_finalizer

logger = logging.getLogger("aiosite.db")

# How long a client should wait before retrying while the database is unavailable.
RETRY_AFTER_SECONDS = "5"


def db_session(request: web.Request) -> AsyncSession:
    """The request's database session, committed or rolled back when the handler ends."""
    session = request.get(DB_SESSION)
    if session is None:
        session = database_of(request).sessionmaker()
        request[DB_SESSION] = session
        add_request_finalizer(request, functools.partial(_finish, request, session))
    return session


def fast_path(target: web.Request | web.Application) -> FastPath:
    """The site database's fast path (docs/performance.md), e.g.
    ``row = await fast_path(request).fetch_one(WORLD_BY_ID, id=5)``."""
    return database_of(target).fast


def session_scope(
    target: web.Request | web.Application,
) -> AbstractAsyncContextManager[AsyncSession]:
    """A session of its own outside a request's (startup hooks, background tasks,
    websockets): ``async with session_scope(app) as session: ...`` commits at the end
    of the block, or rolls back if it raises."""
    return database_of(target).transaction()


async def _finish(request: web.Request, session: AsyncSession, exc: BaseException | None) -> None:
    # A db_session() call after this one (an error page's context processor) opens a
    # new session, with a finalizer of its own.
    del request[DB_SESSION]
    try:
        if exc is None or (isinstance(exc, web.HTTPException) and exc.status < 400):
            try:
                await session.commit()
            except BaseException:
                await _rollback_quietly(session)
                raise
        else:
            await _rollback_quietly(session)
    finally:
        await _close_quietly(session)


async def _rollback_quietly(session: AsyncSession) -> None:
    # After a lost connection the rollback fails too; the original error is the news.
    try:
        await session.rollback()
    except Exception:
        logger.debug("rollback failed", exc_info=True)


async def _close_quietly(session: AsyncSession) -> None:
    try:
        await session.close()
    except Exception:
        logger.debug("closing the session failed", exc_info=True)


# Connection failures: ours, the pool's, and the fast path's, which asyncpg raises itself
# (a connection lost in the middle of a query, a server shutting down or starting up).
_UNAVAILABLE = (
    DatabaseUnavailable,
    PoolTimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)


def translate_error(exc: BaseException) -> web.HTTPException | None:
    """The HTTP error a database failure means for the client (an ``ErrorTranslator``)."""
    if is_unavailable(exc):
        logger.warning("database unavailable: %s", one_line(exc))
        return web.HTTPServiceUnavailable(
            text="The database is unavailable; please try again shortly.",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )
    if isinstance(exc, IntegrityError | asyncpg.IntegrityConstraintViolationError):
        # A duplicate or a dangling reference that the view did not check for, often a
        # race between two requests: the client's request conflicts with the data.
        logger.warning("integrity error: %s", one_line(exc), exc_info=exc)
        return web.HTTPConflict(text="The request conflicts with existing data.")
    return None


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot be reached (not a bad query)."""
    if isinstance(exc, _UNAVAILABLE):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated
