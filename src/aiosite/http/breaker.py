"""Circuit breakers, one per service, by purgatory, in this process's memory.

A breaker counts the failed attempts of its service in a row: a refused or dropped
connection, a timeout, a 5xx. At ``failures`` it opens: calls fail at once with
``CircuitOpen`` and the upstream gets no traffic. ``reset_after`` seconds later it
half-opens: one call goes through to probe the upstream while the others still fail at
once, and the probe's outcome closes the breaker (success) or opens it again (failure).
A 4xx is a success: the upstream is up and answering.

What is neither leaves the breaker as it was: a call cancelled (a fan-out's deadline, a
sibling's failure, a visitor who went away: the upstream may be fine), a bug of the
caller's (a TypeError), the test guard. A cancelled probe lets the next call probe.

Per process, which is what a breaker needs: each worker learns of an outage from its own
calls, after ``failures`` of them, and nothing breaks when a request lands elsewhere.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from aiosite.http.config import BreakerSettings
from aiosite.http.errors import (
    CircuitOpen,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamUnavailable,
)

if TYPE_CHECKING:
    from purgatory.service._async.circuitbreaker import AsyncCircuitBreaker

logger = logging.getLogger("aiosite.http")

T = TypeVar("T")
R = TypeVar("R")

# The upstream's failures; anything else a call ends with says nothing of its health.
_FAILURES = (UpstreamTimeout, UpstreamUnavailable, UpstreamStatusError)
_HALF_OPEN = "half-opened"


class Breakers:
    """The circuit breakers of one site's services."""

    def __init__(self) -> None:
        # Imported when the site starts, only for a site whose services have a breaker:
        # purgatory imports its Redis client, a tenth of a second.
        from purgatory import AsyncCircuitBreakerFactory
        from purgatory.domain.model import OpenedState

        self._opened = OpenedState
        self._factory = AsyncCircuitBreakerFactory()
        self._factory.add_listener(_log_change)
        # The services whose half-open breaker has let its one probe through.
        self._probing: set[str] = set()

    async def call(
        self,
        service: str,
        settings: BreakerSettings,
        attempt: Callable[[T], Awaitable[R]],
        call: T,
    ) -> R:
        """``await attempt(call)`` through the service's breaker; ``CircuitOpen`` at once
        while it is open, or half-open with its probe under way."""
        breaker = await self._factory.get_breaker(
            service, threshold=settings.failures, ttl=settings.reset_after
        )
        # Entered and left by hand: purgatory takes whatever its ``async with`` is told
        # not to count for a success (a cancelled probe would close the breaker).
        # Nothing from here to the probe's mark suspends (purgatory's in-memory state is
        # synchronous behind its coroutines), so one call alone becomes the probe.
        if service in self._probing:
            raise CircuitOpen(service, 0.0)
        try:
            await breaker.__aenter__()
        except self._opened as opened:
            left = opened.opened_at + settings.reset_after - time.time()
            raise CircuitOpen(service, left) from None
        probe = breaker.context.state == _HALF_OPEN
        if probe:
            self._probing.add(service)
        try:
            result = await attempt(call)
        except _FAILURES as exc:
            await breaker.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        except BaseException:
            await _settle(breaker)
            raise
        else:
            await breaker.__aexit__(None, None, None)
            return result
        finally:
            if probe:
                self._probing.discard(service)


async def _settle(breaker: AsyncCircuitBreaker) -> None:
    """Record what entering changed (opened -> half-open), without an outcome."""
    context = breaker.context
    while context.messages:
        await breaker.messagebus.handle(context.messages.pop(0), breaker.uow)


def _log_change(name: str, event_name: str, event: object) -> None:
    if event_name != "state_changed":
        return
    state = getattr(event, "state", None)
    if state == "opened":
        logger.warning("Circuit breaker of service %r opened: calls fail at once", name)
    elif state == _HALF_OPEN:
        logger.info("Circuit breaker of service %r half-open: one call probes it", name)
    elif state == "closed":
        logger.info("Circuit breaker of service %r closed: the service answers again", name)
