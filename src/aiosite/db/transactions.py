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

``run_transaction(request, work)`` runs a unit of work in transactions of its own, run
again when one loses a race with another request (``aiosite.db.retry``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from aiosite.db.engine import database_of, end_failed_session
from aiosite.db.errors import (
    DatabaseFailedEarlier,
    database_failed,
    is_database_failure,
    mark_database_failed,
)
from aiosite.db.fast_path import FastPath
from aiosite.db.retry import IsolationLevel
from aiosite.hooks import add_request_finalizer

T = TypeVar("T")

logger = logging.getLogger("aiosite.db")

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


async def run_transaction(
    target: web.Request | web.Application,
    work: Callable[[AsyncSession], Awaitable[T]],
    *,
    attempts: int = 3,
    isolation_level: IsolationLevel | None = None,
) -> T:
    """Run ``await work(session)`` in a transaction of its own, committed before this
    returns, and run it again in a new one when it ends in a deadlock or a serialization
    failure (``attempts`` runs in all, with a short random wait between them; the last
    failure is raised, which the site answers with a 503). Returns what ``work`` returns::

        async def vote(session: AsyncSession) -> int:
            post = await session.get(Post, post_id, with_for_update=True)
            post.votes += 1
            return post.votes

        votes = await run_transaction(request, vote)

    ``work`` gets a new session each time: it must load what it changes with that
    session, and have no other effect that a second run would repeat.
    ``isolation_level`` (PostgreSQL) is the transaction's, e.g. ``"SERIALIZABLE"``.

    It is a transaction boundary for the request's own session too: what
    ``db_session(request)`` did so far is committed first, so that the unit holds no
    second pooled connection and waits for no lock of its own request. The request's
    session goes on afterwards in a new transaction, committed when the handler ends.
    """
    if isinstance(target, web.Request):
        if database_failed(target):
            raise DatabaseFailedEarlier("the database failed earlier in this request")
        session = target.get(DB_SESSION)
        if session is not None and session.in_transaction():
            await session.commit()
    return await database_of(target).run_transaction(
        work, attempts=attempts, isolation_level=isolation_level
    )


async def _finish(request: web.Request, session: AsyncSession, exc: BaseException | None) -> None:
    # A db_session() call after this one (an error page's context processor) opens a
    # new session, with a finalizer of its own, unless the database failed.
    del request[DB_SESSION]
    if exc is not None and is_database_failure(exc):
        mark_database_failed(request)
    if exc is None or (isinstance(exc, web.HTTPException) and exc.status < 400):
        try:
            # One greenlet hop for both (SQLAlchemy runs each call of an AsyncSession's
            # in a greenlet of its own). A session that only read sends nothing: its
            # transaction never began (aiosite.db.lazy_begin).
            await session.run_sync(_commit_and_close)
        except BaseException as failure:
            if is_database_failure(failure):
                mark_database_failed(request)
            await end_failed_session(session, failure)
            raise
    else:
        await end_failed_session(session, exc)


def _commit_and_close(session: Session) -> None:
    session.commit()
    try:
        session.close()
    except Exception:  # as close_quietly: the committed work is what matters
        logger.debug("closing the session failed", exc_info=True)
