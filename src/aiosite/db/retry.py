"""Running a unit of work again when its transaction loses a race.

PostgreSQL ends a transaction that deadlocked with another one (``40P01``), or that
SERIALIZABLE or REPEATABLE READ isolation could not fit in with concurrent ones
(``40001``), by rolling all of it back: the statement that failed, and everything the
transaction did before it. The remedy is to run the whole unit of work again, in a new
transaction, and it normally succeeds, since the other transaction is over by then.

A savepoint cannot do this: ``ROLLBACK TO SAVEPOINT`` keeps the locks the transaction
took before the savepoint (so the same cycle of waits forms again) and keeps its
snapshot (which is what a serialization failure is about). Nor can the request's
session, which commits after the handler has returned, too late to run anything again.
So each attempt gets a transaction (and session) of its own, committed before the next
step of the handler, and the unit must be a function that can simply be called again.

``Database.run_transaction`` and ``FastPath.run_transaction`` run their attempts through
``run_attempts`` here; ``aiosite.run_transaction(request, work)`` is the handler's
entry (``aiosite.db.transactions``).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

from aiosite.db.errors import transient_error
from aiosite.exceptions import one_line

logger = logging.getLogger("aiosite.db")

T = TypeVar("T")

# The isolation levels a unit of work may ask for (PostgreSQL's; on SQLite every
# transaction is serializable, and the setting is left alone).
IsolationLevel = Literal["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"]

# "Full jitter" backoff: before attempt n+1, a random wait of up to
# BACKOFF_SECONDS * 2**(n-1), at most MAX_BACKOFF_SECONDS, so that the transactions that
# collided do not collide again in step.
BACKOFF_SECONDS = 0.05
MAX_BACKOFF_SECONDS = 1.0


async def run_attempts(attempt: Callable[[], Awaitable[T]], *, attempts: int, what: str) -> T:
    """``await attempt()``, called again (up to ``attempts`` calls in all) while it fails
    with a transaction conflict (what ``aiosite.db.errors.is_conflict`` tells); the last conflict,
    or any other error, is raised. ``attempt`` must begin and end a transaction of its
    own. Each conflict that is retried is logged at INFO, naming ``what``."""
    if attempts < 1:
        raise ValueError(f"attempts must be 1 or more, not {attempts}")
    number = 1
    while True:
        try:
            return await attempt()
        except Exception as exc:
            found = transient_error(exc)
            if found is None or not found.conflict or number >= attempts:
                raise
            ceiling = min(MAX_BACKOFF_SECONDS, BACKOFF_SECONDS * 2 ** (number - 1))
            delay = random.uniform(0, ceiling)  # noqa: S311 (a jitter, not a secret)
            number += 1
            logger.info(
                "%s: transaction conflict (%s [%s]); running it again, attempt %d of %d",
                what,
                one_line(found.driver_error),
                found.code,
                number,
                attempts,
            )
        await asyncio.sleep(delay)


def name_of(work: Callable[..., object]) -> str:
    """A unit of work's name, for the log: ``checkout.reserve`` for a function
    ``reserve`` defined in a handler ``checkout``."""
    name = getattr(work, "__qualname__", None)
    return name.replace(".<locals>", "") if isinstance(name, str) else repr(work)
