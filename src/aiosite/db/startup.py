"""Opening the site's database when the application starts.

In development and test a database that cannot be reached stops the start at once, with
the one-line error. Outside them the site starts anyway when the database is merely
down (refused, timed out, closed, restarting): a worker that starts during an outage (a
replaced, reloaded or recycled one) must not stop the whole server. Its pages answer
503 until the database answers again, and ``/readyz`` says why. A configuration the
database refuses (a wrong password, an unknown database or role, a malformed URL or an
unknown host) stays a start-up error everywhere: waiting does not mend it.
"""

from __future__ import annotations

import logging
import socket
import ssl

import asyncpg
from sqlalchemy.exc import DBAPIError

from aiosite.db.engine import Database
from aiosite.exceptions import ImproperlyConfigured
from aiosite.settings import Settings

logger = logging.getLogger("aiosite.db")

# The database is down or busy, not misconfigured: it may answer in a moment.
_TRANSIENT = (
    asyncpg.PostgresConnectionError,  # the connection failed or was closed
    asyncpg.CannotConnectNowError,  # starting up, shutting down, in recovery
    asyncpg.AdminShutdownError,
    asyncpg.TooManyConnectionsError,
    TimeoutError,  # database.connect_timeout, or a socket's
)


async def open_database(settings: Settings) -> Database:
    """The site's database, connected to once; ImproperlyConfigured when that fails,
    except for an outage outside development and test (a WARNING, and the site starts)."""
    database = Database(settings)
    try:
        await database.check()
    except ImproperlyConfigured as exc:
        # check() raises from None: what failed is still its __context__.
        if settings.is_local or not is_outage(exc.__context__):
            await database.dispose()
            raise
        logger.warning("%s; serving 503 pages until it answers; /readyz reports it", exc)
    except BaseException:
        await database.dispose()
        raise
    return database


def is_outage(exc: BaseException | None) -> bool:
    """Whether a failed connection attempt means the database is down (it may answer
    later) rather than that the settings are wrong."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen and len(seen) < 6:
        seen.append(exc)
        if isinstance(exc, socket.gaierror):
            # An unknown host is a typo, unless the resolver itself failed for now.
            return exc.errno == socket.EAI_AGAIN
        if isinstance(exc, ssl.SSLError):
            return False  # a certificate or TLS setting, not an outage
        if isinstance(exc, (*_TRANSIENT, OSError)):
            return True
        # SQLAlchemy's adapter error carries the driver's as .orig (or its cause).
        orig = exc.orig if isinstance(exc, DBAPIError) else None
        exc = orig if orig is not None and orig not in seen else exc.__cause__
    return False
