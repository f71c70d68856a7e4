"""The hub a site's settings ask for: its backend chosen and addressed."""

from __future__ import annotations

from aiosite.channels.backend import Backend
from aiosite.channels.config import ChannelsSettings
from aiosite.channels.hub import Hub
from aiosite.channels.memory import MemoryBackend
from aiosite.settings import Settings


def make_hub(settings: Settings) -> Hub:
    """The site's hub on the ``channels.backend`` backend; nothing connects before the
    first publish or subscription."""
    config = settings.section(ChannelsSettings)

    def backend(hub: Hub) -> Backend:
        if config.backend == "redis":
            from aiosite.channels.redis_backend import RedisBackend

            return RedisBackend(hub, settings, config)
        if config.backend == "postgres":
            from aiosite.channels.postgres import PostgresBackend

            return PostgresBackend(hub, postgres_dsn(settings, config), config)
        return MemoryBackend(hub, config.history)

    return Hub(config, backend)


def postgres_dsn(settings: Settings, config: ChannelsSettings) -> str:
    """asyncpg's DSN: ``channels.url``, else the site's database URL without SQLAlchemy's
    ``+driver`` (read by name: the database battery is not imported here)."""
    url = config.url
    if url is None:
        database = getattr(settings, "database", None)
        url = str(getattr(database, "url", "") or "")
    scheme, sep, rest = url.partition("://")
    return scheme.split("+", 1)[0] + sep + rest
