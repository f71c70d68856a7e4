"""The one Redis client factory: every client of the site has the ``redis:`` section's
timeouts, health checks and retry policy.

What a client does when Redis misbehaves:

- a connection Redis closed (a restart, ``CLIENT KILL``, an idle timeout) is noticed by
  the health check or by the failed command, reconnected, and the command retried once;
- a server that does not answer (paused, or a network that drops packets) raises
  ``redis.exceptions.TimeoutError`` after ``socket_timeout`` seconds and is never
  retried, so a request waits that long at most before the battery answers 503;
- with ``max_connections`` in use, a command waits ``connect_timeout`` seconds for one
  to be free, then raises ``redis.exceptions.ConnectionError``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from aiosite.settings import RedisSettings, Settings

if TYPE_CHECKING:
    # Imported by the factory itself: a site that uses no Redis never loads the client.
    import redis.asyncio as aioredis


def unavailable_errors() -> tuple[type[Exception], ...]:
    """What a client of the factory raises when Redis cannot be reached or does not
    answer in time (imported here: a site that uses no Redis never loads the client)."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return (RedisConnectionError, RedisTimeoutError)


def redis_client(
    settings: Settings, *, url: str | None = None, client_name: str | None = None
) -> aioredis.Redis:
    """A client of the Redis at ``url`` (default: ``redis.url``) with the ``redis:``
    section's bounds. ``client_name`` is what ``CLIENT LIST`` shows for its connections
    (letters, digits and punctuation, no spaces), e.g. ``"aiosite.sessions"``.

    The client connects on first use; close it with ``await client.aclose()``.
    """
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    config = settings.redis
    pool = aioredis.BlockingConnectionPool.from_url(
        url or config.url,
        max_connections=config.max_connections,
        # How long a command waits for a free connection of the pool.
        timeout=config.connect_timeout,
        socket_connect_timeout=config.connect_timeout,
        socket_timeout=config.socket_timeout,
        health_check_interval=config.health_check_interval,
        # A dead connection is replaced and the command sent again, once, at once; a
        # timeout is not retried: the server is there but not answering.
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        client_name=client_name,
    )
    return aioredis.Redis.from_pool(pool)


class RedisPing:
    """A readiness check (``/readyz``): PING the Redis at ``url``, on a client of its own
    made at the first probe, so that a check never waits behind a battery's busy pool."""

    def __init__(self, settings: Settings, url: str) -> None:
        self.settings = settings
        self.url = url
        self._client: aioredis.Redis | None = None

    async def __call__(self) -> None:
        if self._client is None:
            self._client = redis_client(self.settings, url=self.url, client_name="aiosite.ready")
        await self._client.ping()

    async def close(self, *_: object) -> None:
        """Close the client (an ``app.on_cleanup`` callback)."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class _Probes(Protocol):
    # What add_redis_check uses of aiosite.probes.Probes. It cannot import that class:
    # aiosite.services sits below aiosite.probes in the layers (pyproject.toml,
    # import-linter), so that a client factory never depends on the site's assembly.
    @property
    def readiness_checks(self) -> Mapping[str, Any]: ...

    def add_readiness_check(
        self, name: str, check: Callable[[], Awaitable[None]], *, timeout: float | None = None
    ) -> None: ...


def add_redis_check(probes: _Probes, settings: Settings, url: str, what: str) -> RedisPing | None:
    """Register a readiness check of the Redis at ``url`` for a battery (``what``:
    "sessions", "broadcast"), named "redis", or "redis:<what>" when another Redis has
    that name; None when a check of the same URL is registered (one PING per server).
    The caller closes the returned check's client when the site stops."""
    for readiness in probes.readiness_checks.values():
        check = getattr(readiness, "check", None)
        if isinstance(check, RedisPing) and check.url == url:
            return None
    name = "redis" if "redis" not in probes.readiness_checks else f"redis:{what}"
    ping = RedisPing(settings, url)
    probes.add_readiness_check(name, ping)
    return ping


__all__ = ["RedisPing", "RedisSettings", "add_redis_check", "redis_client", "unavailable_errors"]
