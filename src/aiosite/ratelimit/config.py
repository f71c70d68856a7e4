"""The ``ratelimit:`` settings section."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from aiosite.settings import Section


class RateLimitSettings(Section):
    """Rate limits (docs/rate-limits.md): where hits are counted, and what an outage of
    that store means."""

    # false: every limit lets every request through (load tests, a site behind a proxy
    # that limits instead).
    enabled: bool = True
    # memory: counted in this process only (development, tests, a single process);
    # redis: shared by every worker and host on the same Redis.
    storage: Literal["memory", "redis"] = "memory"
    # null: the site's Redis, ``redis.url``.
    redis_url: str | None = None
    key_prefix: str = Field(default="aiosite:ratelimit", min_length=1)
    # When Redis fails: true lets requests through unlimited (a WARNING is logged once per
    # outage); false refuses rate-limited requests with 503.
    fail_open: bool = True
    # Seconds an outage is assumed to last before Redis is asked again, so that a Redis
    # that does not answer costs one timeout per interval, not one per request.
    outage_retry: float = Field(default=5.0, ge=0)
