"""Retries of a service's idempotent requests, by stamina (exponential backoff with
jitter, bounded attempts).

What is retried: a connection that failed in a way that may pass (refused, reset, a
name that did not resolve), a timeout, and the statuses that say "try again": 502, 503,
504. Not retried: TLS failures (a certificate does not fix itself in a second), other
5xx (a bug of the upstream's, answered the same way again), 429 (the upstream asked for
less traffic; retrying within the same request adds to it), an open circuit breaker,
and every request that is not idempotent unless its caller says it is.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from aiosite.http.config import BackoffSettings
from aiosite.http.errors import (
    CircuitOpen,
    UpstreamError,
    UpstreamStatusError,
)

if TYPE_CHECKING:
    import stamina

T = TypeVar("T")
R = TypeVar("R")

RETRY_STATUSES = frozenset({502, 503, 504})
# Methods whose repetition has the effect of one request (RFC 9110, 9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


class RetryPolicy:
    """How one service's idempotent calls are retried."""

    def __init__(self, retries: int, backoff: BackoffSettings) -> None:
        # Imported when the site starts (and only for a site with services), not with
        # aiosite.http, which every site imports.
        import stamina

        self.retries = retries
        self.backoff = backoff
        # timeout=None: each attempt is bounded by the service's timeout, and the
        # attempts by their number.
        self._caller: stamina.AsyncRetryingCaller = stamina.AsyncRetryingCaller(
            attempts=retries + 1,
            timeout=None,
            wait_initial=backoff.initial,
            wait_max=backoff.max,
            wait_jitter=backoff.jitter,
        )

    async def call(self, attempt: Callable[[T], Awaitable[R]], call: T) -> R:
        """``await attempt(call)``, again while it fails in a way worth retrying."""
        return await self._caller(self.should_retry, attempt, call)

    def should_retry(self, exc: Exception) -> bool | float:
        """Whether to retry after ``exc``, or the seconds to wait first (an upstream's
        ``Retry-After`` no longer than ``backoff.max``; a longer one is not waited for)."""
        if isinstance(exc, UpstreamStatusError):
            if exc.upstream_status not in RETRY_STATUSES:
                return False
            if exc.retry_after is not None:
                return exc.retry_after if exc.retry_after <= self.backoff.max else False
            return True
        if isinstance(exc, CircuitOpen):
            return False
        return isinstance(exc, UpstreamError) and exc.transient


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
