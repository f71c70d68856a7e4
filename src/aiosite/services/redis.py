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

from typing import TYPE_CHECKING

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


__all__ = ["RedisSettings", "redis_client", "unavailable_errors"]
