"""The site's rate limiter: a moving window (the ``limits`` library) counted in memory or
in Redis, which lets requests through while Redis is down (``ratelimit.fail_open``).

``limits`` and the Redis client are imported when the first limit is checked, so a site
that limits nothing never loads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from aiosite.ratelimit.config import RateLimitSettings
from aiosite.services.redis import redis_client
from aiosite.settings import Settings

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from limits import RateLimitItem
    from limits.aio.storage import MemoryStorage, RedisStorage
    from limits.aio.strategies import MovingWindowRateLimiter

logger = logging.getLogger("aiosite.ratelimit")


@functools.lru_cache(maxsize=256)  # a pure function of the text: parsed once per limit
def parse_limit(limit: str) -> RateLimitItem:
    """``"5/minute"``, ``"100 per hour"``, ``"2/3 seconds"``: ValueError for anything else."""
    from limits import parse_many

    try:
        items = parse_many(limit)
    except ValueError:
        items = []
    if len(items) != 1 or items[0].amount < 1:
        raise ValueError(
            f"{limit!r} is not a rate limit; write one limit as a count of requests per "
            'time, e.g. "5/minute", "100 per hour" or "2/10 seconds" (stack two '
            "@rate_limit decorators for two limits)"
        )
    return items[0]


@dataclass(frozen=True, slots=True)
class RateLimitResult:
    """The outcome of one hit: whether it was allowed, and if not, in how many seconds
    (rounded up) the limit lets a request through again."""

    allowed: bool
    limit: str
    retry_after: int = 0


class RateLimiter:
    """One per site (``RATE_LIMITER``): counts hits per (scope, key) in a moving window."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.config = settings.section(RateLimitSettings)
        self._strategy: MovingWindowRateLimiter | None = None
        self._storage: MemoryStorage | RedisStorage | None = None
        self._client: aioredis.Redis | None = None
        # Whether the store is in an outage (reported once), and when to ask it again.
        self._down = False
        self._retry_at = 0.0

    @property
    def enabled(self) -> bool:
        """``ratelimit.enabled``: false lets every request through uncounted."""
        return self.config.enabled

    async def hit(
        self, limit: RateLimitItem, scope: str, key: str, *, cost: int = 1
    ) -> RateLimitResult:
        """Count ``cost`` hits for ``key`` in ``scope``; refused once the window is full."""
        from limits.errors import StorageError

        described = str(limit)
        if not self.config.enabled:
            return RateLimitResult(True, described)
        if self._down and time.monotonic() < self._retry_at:
            return self._unavailable(described)
        strategy = self._strategy or self._open()
        try:
            if await strategy.hit(limit, scope, key, cost=cost):
                self._recovered()
                return RateLimitResult(True, described)
            stats = await strategy.get_window_stats(limit, scope, key)
        except StorageError as exc:
            return self._failed(exc.storage_error, described)
        self._recovered()
        # Until the oldest hit in the window leaves it: the first moment one more fits.
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        return RateLimitResult(False, described, retry_after)

    def _open(self) -> MovingWindowRateLimiter:
        from limits.aio.storage import MemoryStorage, RedisStorage
        from limits.aio.strategies import MovingWindowRateLimiter

        if self.config.storage == "redis":
            self._client = redis_client(
                self.settings, url=self.config.redis_url, client_name="aiosite.ratelimit"
            )
            # On the site's client factory's pool (its timeouts and health checks); the
            # URL only tells limits which client library to use. The pool's connections
            # resend a command once when the connection drops: a reply lost after Redis
            # ran the moving-window script counts that hit twice (docs/rate-limits.md),
            # which beats taking every dropped idle connection for an outage.
            pool: dict[str, Any] = {"connection_pool": self._client.connection_pool}
            self._storage = RedisStorage(
                "async+redis://",
                implementation="redispy",
                key_prefix=self.config.key_prefix,
                wrap_exceptions=True,
                **pool,
            )
        else:
            self._storage = MemoryStorage(wrap_exceptions=True)
        self._strategy = MovingWindowRateLimiter(self._storage)
        return self._strategy

    def _failed(self, error: Exception, described: str) -> RateLimitResult:
        if not self._down:
            self._down = True
            if self.config.fail_open:
                message = (
                    "Rate limits are off: their Redis store failed (%s: %s); requests are "
                    "let through unlimited until it answers again"
                )
            else:
                message = (
                    "Rate limits cannot be counted: their Redis store failed (%s: %s); "
                    "rate-limited requests get 503 until it answers again"
                )
            logger.warning(message, type(error).__name__, error)
        self._retry_at = time.monotonic() + self.config.outage_retry
        return self._unavailable(described)

    def _unavailable(self, described: str) -> RateLimitResult:
        if self.config.fail_open:
            return RateLimitResult(True, described)
        retry = max(1, math.ceil(self.config.outage_retry))
        raise web.HTTPServiceUnavailable(
            text="This cannot be done for a moment; try again shortly.",
            headers={"Retry-After": str(retry)},
        )

    def _recovered(self) -> None:
        if self._down:
            self._down = False
            logger.info("Rate limits are on again: their Redis store answers")

    async def close(self) -> None:
        """Close the Redis client, or stop the memory store's expiry task."""
        if self._client is not None:
            await self._client.aclose()
        timer = getattr(self._storage, "timer", None)
        if isinstance(timer, asyncio.Task) and not timer.done():
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer


RATE_LIMITER: web.AppKey[RateLimiter] = web.AppKey("aiosite.rate_limiter", RateLimiter)


def rate_limiter_of(request: web.Request) -> RateLimiter:
    try:
        return request.config_dict[RATE_LIMITER]
    except KeyError:
        raise RuntimeError(
            "rate limits need a site made by aiosite.create_site (its ratelimit battery)"
        ) from None
