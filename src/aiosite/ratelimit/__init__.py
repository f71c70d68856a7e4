"""Rate limits for any route: ``@rate_limit("5/minute")`` on a handler or a view method,
``await check_rate_limit(request, ...)`` inside one (docs/rate-limits.md).

Over the limit a request gets 429 Too Many Requests with ``Retry-After``, answered with
the site's error page (JSON for API clients). Hits are counted in a moving window, in
memory (one process) or in Redis (every worker and host), by the ``limits`` library. The
battery puts the site's ``RateLimiter`` on the application and closes its store when the
site stops; nothing is opened before the first limit is checked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from aiosite.apps import AppRegistry
from aiosite.battery import Battery
from aiosite.ratelimit.config import RateLimitSettings
from aiosite.ratelimit.guard import (
    check_rate_limit,
    hit_rate_limit,
    rate_limit,
    too_many_requests,
)
from aiosite.ratelimit.keys import RateLimitKey, by_address
from aiosite.ratelimit.limiter import RATE_LIMITER, RateLimiter, RateLimitResult, parse_limit
from aiosite.settings import Settings


def _attach(app: web.Application, settings: Settings, registry: AppRegistry) -> None:
    limiter = app[RATE_LIMITER] = RateLimiter(settings)

    async def limiter_ctx(app: web.Application) -> AsyncIterator[None]:
        yield
        await limiter.close()

    app.cleanup_ctx.append(limiter_ctx)


battery = Battery("aiosite.ratelimit", _attach, {"ratelimit": RateLimitSettings})
setup = battery.setup

__all__ = [
    "RATE_LIMITER",
    "RateLimitKey",
    "RateLimitResult",
    "RateLimitSettings",
    "RateLimiter",
    "by_address",
    "check_rate_limit",
    "hit_rate_limit",
    "parse_limit",
    "rate_limit",
    "setup",
    "too_many_requests",
]
