"""What database failures mean for the client: the db battery's exception handlers.

A database that cannot be reached is a 503 with Retry-After (the site recovers by itself
once it is back); a constraint the view did not check for is a 409. A transaction that
lost a race (a deadlock, a serialization failure) or a database too busy to answer in
time (a lock or statement timeout) is a 503 with Retry-After too, logged in one line:
the request may well succeed when sent again, and ``run_transaction``
(``aiosite.db.retry``) runs a unit of work again by itself on a lost race.

A request whose database failed is marked (``database_failed(request)``): its error
page must not need the database. The request's session refuses a second try
(``db_session`` raises ``DatabaseUnavailable`` at once instead of waiting on another
connection attempt), and what an error page shows from the database, such as the
logged-in user of ``aiosite.contrib.auth``, is shown as unknown.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg
from aiohttp import web
from sqlalchemy.exc import DBAPIError, IntegrityError, MissingGreenlet
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from aiosite.exceptions import DatabaseUnavailable, one_line
from aiosite.hooks import Hooks

logger = logging.getLogger("aiosite.db")

# How long a client should wait before retrying while the database is unavailable.
RETRY_AFTER_SECONDS = "5"
# ... after its transaction lost a race with another one (which is over by then).
CONFLICT_RETRY_AFTER_SECONDS = "1"

# A transaction that lost a race with a concurrent one: the server rolled all of it back,
# and the same work run again in a new transaction normally succeeds (PostgreSQL's docs:
# "applications using this level must be prepared to retry transactions due to
# serialization failures"). PostgreSQL's SQLSTATEs, and SQLite's extended result code
# for a write in a transaction whose snapshot another connection's commit made stale.
CONFLICTS = {
    "40001": "serialization failure",
    "40P01": "deadlock detected",
    "SQLITE_BUSY_SNAPSHOT": "snapshot made stale by another write",
}
# A database too busy to answer in time: a lock held by another transaction for longer
# than lock_timeout (or at once, with NOWAIT), a statement that ran past
# statement_timeout (or was cancelled by an operator), SQLite's busy timeout. A 503, but
# not retried by run_transaction: running the same work again at once adds load to a
# database that is already slow, and a NOWAIT caller handles the refusal itself.
BUSY = {
    "55P03": "lock not available",
    "57014": "statement cancelled",
    "SQLITE_BUSY": "database is locked",
    "SQLITE_LOCKED": "table is locked",
}

# Connection failures: ours, the pool's, and the fast path's, which asyncpg raises itself
# (a connection lost in the middle of a query, a server shutting down or starting up).
_UNAVAILABLE = (
    DatabaseUnavailable,
    PoolTimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)

# Driver errors that leave a connection in an unknown state: the driver's protocol may be
# half-way through an operation (asyncpg runs one at a time), or the connection is gone.
_CONNECTION_BROKEN = (
    asyncpg.PostgresConnectionError,  # lost, refused, "closed in the middle of operation"
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.InterfaceError,  # "another operation is in progress", "connection is closed"
    asyncpg.InternalClientError,  # "cannot switch to state 15; another operation ..."
)

MISSING_GREENLET_HINT = (
    "Hint: an attribute was loaded lazily (a relationship or an expired column) outside "
    "an await; load it in the query with selectinload()/joinedload(), or "
    "`await obj.awaitable_attrs.name` (docs/models.md#relationships-and-async)"
)

# Set by the exception handlers below (and the request session's finalizer) on a request
# whose database failed.
DATABASE_FAILED: web.RequestKey[bool] = web.RequestKey("aiosite.database_failed", bool)


class DatabaseFailedEarlier(DatabaseUnavailable):
    """``db_session(request)`` on a request whose database already failed: not tried
    again (its failure was logged once)."""


def database_failed(request: web.Request) -> bool:
    """Whether the database failed for this request (it is answered with a 503, or its
    error page renders after a database failure). An error page's context processor
    checks it to show what it would read from the database as unknown::

        async def notifications(request):
            if database_failed(request):
                return {"unread": None}
            return {"unread": await count_unread(db_session(request))}
    """
    return request.get(DATABASE_FAILED) is True


def is_database_failure(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot be reached (a 503)."""
    if isinstance(exc, _UNAVAILABLE):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


@dataclass(frozen=True, slots=True)
class TransientError:
    """What ``transient_error`` found: the driver's error code and what it means."""

    code: str
    meaning: str
    # A lost race (deadlock, serialization failure): the transaction succeeds when run
    # again. Otherwise the database was too busy (a lock or statement timeout).
    conflict: bool
    # The driver's own error, for the log line.
    driver_error: BaseException


def transient_error(exc: BaseException) -> TransientError | None:
    """What ``exc`` means when it is a transient failure of a transaction (a deadlock, a
    serialization failure, a lock or statement timeout), from the ORM (SQLAlchemy's
    ``DBAPIError``, whose ``.orig`` carries the SQLSTATE) or the fast path (asyncpg's
    own ``DeadlockDetectedError``, ``SerializationError``...); None for anything else."""
    code: object = None
    driver_error: BaseException = exc
    if isinstance(exc, asyncpg.PostgresError):
        code = exc.sqlstate
    elif isinstance(exc, DBAPIError) and exc.orig is not None:
        # asyncpg's error, adapted by SQLAlchemy (with .sqlstate) and kept as the cause;
        # sqlite3's own error (with .sqlite_errorname).
        driver_error = _chain(exc.orig)[-1]
        code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "sqlite_errorname", None)
    if not isinstance(code, str):
        return None
    if code in CONFLICTS:
        return TransientError(code, CONFLICTS[code], True, driver_error)
    if code in BUSY:
        return TransientError(code, BUSY[code], False, driver_error)
    return None


def is_conflict(exc: BaseException) -> bool:
    """Whether ``exc`` ended a transaction that lost a race with another one (a deadlock,
    a serialization failure): the same work succeeds when run again in a new
    transaction: what ``run_transaction`` runs again. For a retry loop of one's own."""
    found = transient_error(exc)
    return found is not None and found.conflict


def connection_unsafe(exc: BaseException) -> bool:
    """Whether the connection a failed operation ran on must be discarded at once, without
    even a ``ROLLBACK``; any other failure is rolled back first, and the connection is
    discarded only if that fails (``aiosite.db.engine.end_failed_session``).

    Unsafe: a cancelled task (``CancelledError``, not an ``Exception``), which may stop
    a query half-way, and an error of the driver's that says the connection is lost or
    mid-operation. asyncpg refuses anything more on such a connection, the finalizer's
    ``ROLLBACK`` or the pool's reset, with ``InternalClientError: cannot switch to state
    15; another operation is in progress`` (state 15 is the simple query it sends
    ROLLBACK as). Anything else, such as a ``TimeoutError`` or ``OSError`` of an upstream
    service, leaves the connection alone: discarding it would churn connections to
    PostgreSQL during an outage that is not the database's.
    """
    if not isinstance(exc, Exception):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        # SQLAlchemy's adapter error, and the asyncpg error (or a socket's OSError or
        # timeout) it was raised from: all the driver's own.
        return any(
            isinstance(cause, (*_CONNECTION_BROKEN, OSError, TimeoutError))
            for cause in _chain(exc.orig)
        )
    return isinstance(exc, _CONNECTION_BROKEN)


def _chain(exc: BaseException | None) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from."""
    found: list[BaseException] = []
    while exc is not None and exc not in found and len(found) < 5:
        found.append(exc)
        exc = exc.__cause__
    return found


def mark_database_failed(request: web.Request) -> None:
    request[DATABASE_FAILED] = True


def add_exception_handlers(hooks: Hooks) -> None:
    for unavailable in _UNAVAILABLE:
        hooks.add_exception_handler(unavailable, unavailable_page)
    # Any other driver error: unavailable when SQLAlchemy saw the connection go, busy
    # when the transaction lost a race or timed out, else (None) a bug: the 500 page.
    hooks.add_exception_handler(DBAPIError, driver_error_page)
    hooks.add_exception_handler(asyncpg.PostgresError, transient_page)  # the fast path
    hooks.add_exception_handler(IntegrityError, conflict_page)
    hooks.add_exception_handler(asyncpg.IntegrityConstraintViolationError, conflict_page)
    hooks.add_exception_hint(MissingGreenlet, MISSING_GREENLET_HINT)
    # An error page that fails on the database (its template shows the user) during an
    # outage is rendered once more, for a user shown as unknown.
    for unavailable in _UNAVAILABLE:
        hooks.add_outage_type(unavailable, mark_outage)
    hooks.add_outage_type(DBAPIError, mark_outage)


def mark_outage(request: web.Request, exc: BaseException) -> bool:
    """Whether an error page failed on a database that cannot be reached; the request is
    then marked, and the outage logged once for the request (as ``unavailable_page``
    does for a handler's failure)."""
    if not is_database_failure(exc):
        return False  # a bad query in a context processor: a bug, with its traceback
    if not database_failed(request):
        mark_database_failed(request)
        logger.warning("database unavailable: %s", one_line(exc))
    return True


def unavailable_page(request: web.Request, exc: BaseException) -> None:
    """503: the database cannot be reached."""
    mark_database_failed(request)
    if not isinstance(exc, DatabaseFailedEarlier):
        logger.warning("database unavailable: %s", one_line(exc))
    raise web.HTTPServiceUnavailable(
        text="The database is unavailable; please try again shortly.",
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


def driver_error_page(request: web.Request, exc: DBAPIError) -> None:
    if exc.connection_invalidated:
        unavailable_page(request, exc)
    transient_page(request, exc)


def transient_page(request: web.Request, exc: BaseException) -> None:
    """503 for a transaction that lost a race (deadlock, serialization failure) or a
    database too busy to answer in time; None for any other error. One warning line
    without a traceback: the request was fine, and sending it again may well work."""
    found = transient_error(exc)
    if found is None:
        return
    logger.warning(
        "database %s in %s %s, answered 503: %s [%s]",
        "conflict" if found.conflict else "busy",
        request.method,
        request.path,
        one_line(found.driver_error),
        found.code,
    )
    if found.conflict:
        text = "The request conflicted with another one; please try again."
        retry_after = CONFLICT_RETRY_AFTER_SECONDS
    else:
        text = "The database is busy; please try again shortly."
        retry_after = RETRY_AFTER_SECONDS
    raise web.HTTPServiceUnavailable(text=text, headers={"Retry-After": retry_after})


def conflict_page(request: web.Request, exc: BaseException) -> None:
    """409: a duplicate or a dangling reference that the view did not check for, often a
    race between two requests: the client's request conflicts with the data."""
    logger.warning("integrity error: %s", one_line(exc), exc_info=exc)
    raise web.HTTPConflict(text="The request conflicts with existing data.")
