"""Request-scoped sessions: one ``AsyncSession`` per request, made on first use.

``db_session(request)`` creates the session the first time a request asks for it; the
session takes a pooled connection only when it first runs a query. A request that never
asks pays one dictionary lookup. The middleware ends the transaction the handler began:
commit when it returns (or raises a redirect or other non-error HTTP exception),
rollback when it raises, and always close.
"""

from __future__ import annotations

import logging
from contextlib import AbstractAsyncContextManager

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncSession

from aiosite.db.engine import DatabaseUnavailable, database_of
from aiosite.exceptions import one_line
from aiosite.keys import DB_SESSION

logger = logging.getLogger("aiosite.db")

# How long a client should wait before retrying while the database is unavailable.
RETRY_AFTER_SECONDS = "5"


def db_session(request: web.Request) -> AsyncSession:
    """The request's database session, committed or rolled back when the handler ends."""
    session = request.get(DB_SESSION)
    if session is None:
        session = database_of(request).sessionmaker()
        request[DB_SESSION] = session
    return session


def session_scope(
    target: web.Request | web.Application,
) -> AbstractAsyncContextManager[AsyncSession]:
    """A session of its own outside a request's (startup hooks, background tasks,
    websockets): ``async with session_scope(app) as session: ...`` commits at the end
    of the block, or rolls back if it raises."""
    return database_of(target).transaction()


def session_middleware() -> Middleware:
    @web.middleware
    async def aiosite_db(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            session = request.get(DB_SESSION)
            if session is not None:
                await _finish(session, commit=exc.status < 400)
            raise
        except BaseException as exc:
            session = request.get(DB_SESSION)
            if session is not None:
                await _finish(session, commit=False)
            _raise_as_http_error(exc)
            raise
        session = request.get(DB_SESSION)
        if session is not None:
            await _finish(session, commit=True)
        return response

    return aiosite_db


async def _finish(session: AsyncSession, *, commit: bool) -> None:
    try:
        if commit:
            try:
                await session.commit()
            except BaseException as exc:
                await _rollback_quietly(session)
                _raise_as_http_error(exc)
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


def _raise_as_http_error(exc: BaseException) -> None:
    """Raise the HTTP error a database failure means for the client; return otherwise."""
    if is_unavailable(exc):
        logger.warning("database unavailable: %s", one_line(exc))
        raise web.HTTPServiceUnavailable(
            text="The database is unavailable; please try again shortly.",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        ) from exc
    if isinstance(exc, IntegrityError):
        # A duplicate or a dangling reference that the view did not check for, often a
        # race between two requests: the client's request conflicts with the data.
        logger.warning("integrity error: %s", one_line(exc), exc_info=exc)
        raise web.HTTPConflict(text="The request conflicts with existing data.") from exc


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot be reached (not a bad query)."""
    if isinstance(exc, DatabaseUnavailable | PoolTimeoutError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated
