"""What database failures mean for the client: the db battery's exception handlers.

A database that cannot be reached is a 503 with Retry-After (the site recovers by itself
once it is back); a constraint the view did not check for is a 409.
"""

from __future__ import annotations

import logging

import asyncpg
from aiohttp import web
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from aiosite.exceptions import DatabaseUnavailable, one_line
from aiosite.hooks import Hooks

logger = logging.getLogger("aiosite.db")

# How long a client should wait before retrying while the database is unavailable.
RETRY_AFTER_SECONDS = "5"

# Connection failures: ours, the pool's, and the fast path's, which asyncpg raises itself
# (a connection lost in the middle of a query, a server shutting down or starting up).
_UNAVAILABLE = (
    DatabaseUnavailable,
    PoolTimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)


def add_exception_handlers(hooks: Hooks) -> None:
    for unavailable in _UNAVAILABLE:
        hooks.add_exception_handler(unavailable, unavailable_page)
    # Any other driver error: unavailable only when SQLAlchemy saw the connection go.
    hooks.add_exception_handler(DBAPIError, invalidated_connection_page)
    hooks.add_exception_handler(IntegrityError, conflict_page)
    hooks.add_exception_handler(asyncpg.IntegrityConstraintViolationError, conflict_page)


def unavailable_page(request: web.Request, exc: BaseException) -> None:
    """503: the database cannot be reached."""
    logger.warning("database unavailable: %s", one_line(exc))
    raise web.HTTPServiceUnavailable(
        text="The database is unavailable; please try again shortly.",
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


def invalidated_connection_page(request: web.Request, exc: DBAPIError) -> None:
    if exc.connection_invalidated:
        unavailable_page(request, exc)


def conflict_page(request: web.Request, exc: BaseException) -> None:
    """409: a duplicate or a dangling reference that the view did not check for, often a
    race between two requests: the client's request conflicts with the data."""
    logger.warning("integrity error: %s", one_line(exc), exc_info=exc)
    raise web.HTTPConflict(text="The request conflicts with existing data.")
