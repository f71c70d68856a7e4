"""The request's database session and its transaction: one ``AsyncSession`` per request,
made on first use, committed or rolled back when the handler is done.

``db_session(request)`` creates the session the first time a request asks for it; the
session takes a pooled connection only when it first runs a query. A request that never
asks pays nothing. The session registers a request finalizer, which the core
calls when the handler is done: commit when it returned (or raised a redirect or other
non-error HTTP exception), rollback when it raised, and always close.

A connection that a cancelled task or a driver error (lost, mid-operation) left unsafe is
invalidated rather than rolled back, and so is one whose rollback fails: see
``aiosite.db.errors.connection_unsafe``. A request whose database could not be reached
is marked (``database_failed``), and its error page runs no second query.
"""

from __future__ import annotations

import functools
from contextlib import AbstractAsyncContextManager

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from aiosite.db.engine import close_quietly, database_of, end_failed_session
from aiosite.db.errors import (
    DatabaseFailedEarlier,
    database_failed,
    is_database_failure,
    mark_database_failed,
)
from aiosite.db.fast_path import FastPath
from aiosite.hooks import add_request_finalizer

# The request's database session, created by the first db_session(request) call.
DB_SESSION: web.RequestKey[AsyncSession] = web.RequestKey("aiosite.db_session", AsyncSession)


def db_session(request: web.Request) -> AsyncSession:
    """The request's database session, committed or rolled back when the handler ends."""
    session = request.get(DB_SESSION)
    if session is None:
        if database_failed(request):
            # The error page of a request whose database failed: another try would
            # fail the same way, after up to database.connect_timeout for an
            # unreachable server.
            raise DatabaseFailedEarlier("the database failed earlier in this request")
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
    # new session, with a finalizer of its own, unless the database failed.
    del request[DB_SESSION]
    if exc is not None and is_database_failure(exc):
        mark_database_failed(request)
    if exc is None or (isinstance(exc, web.HTTPException) and exc.status < 400):
        try:
            await session.commit()
        except BaseException as failure:
            if is_database_failure(failure):
                mark_database_failed(request)
            await end_failed_session(session, failure)
            raise
        await close_quietly(session)
    else:
        await end_failed_session(session, exc)
