"""The ``channels:``, ``websockets:`` and ``sse:`` settings sections."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from aiosite.settings import Section

# What happens to a subscriber whose queue is full when a message arrives: the oldest
# queued message is dropped (and counted), or the subscription ends (a websocket fed
# from it is closed with 1013, "try again later").
WhenFull = Literal["drop_oldest", "disconnect"]


class ReconnectSettings(Section):
    # Seconds before the first reconnection attempt, doubled (with jitter) up to ``max``.
    initial: float = Field(default=0.1, gt=0)
    max: float = Field(default=5.0, gt=0)


class ChannelsSettings(Section):
    """The broadcast hub (docs/broadcast.md): where messages travel between processes."""

    # memory: this process only (development, one process); redis: Redis pub/sub, every
    # process and host on the same Redis; postgres: PostgreSQL LISTEN/NOTIFY.
    backend: Literal["memory", "redis", "postgres"] = "memory"
    # null: the site's Redis (``redis.url``) or database (``database.url``).
    url: str | None = None
    # Messages each subscriber may hold before ``when_full`` applies.
    queue_size: int = Field(default=256, ge=1)
    when_full: WhenFull = "drop_oldest"
    # Messages kept per channel for replay (``Last-Event-ID``); 0 keeps none. The memory
    # backend keeps them in the process, the Redis backend in a capped stream per channel;
    # PostgreSQL keeps none.
    history: int = Field(default=100, ge=0)
    # Largest encoded message (bytes) a publish accepts. PostgreSQL's NOTIFY carries at
    # most 7999 bytes, so that backend refuses more whatever this says.
    max_message_bytes: int = Field(default=64 * 1024, gt=0)
    # The PostgreSQL channel every hub channel travels on (one LISTEN per process).
    postgres_channel: str = Field(default="aiosite_channels", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    # Seconds a publish waits for Redis or PostgreSQL before it raises ChannelUnavailable
    # (the memory backend never waits).
    publish_timeout: float = Field(default=2.0, gt=0)
    reconnect: ReconnectSettings = ReconnectSettings()


class WebSocketSettings(Section):
    """Every websocket opened with ``open_websocket`` (docs/websockets.md)."""

    # Seconds between pings; a client that does not answer one in half that is closed.
    heartbeat: float | None = Field(default=30.0, gt=0)
    # Largest message a client may send (bytes); a larger one closes the socket with 1009.
    max_message_bytes: int = Field(default=64 * 1024, gt=0)
    # Seconds without a message from the client before the socket is closed (1000);
    # null: never. Pings and pongs do not count as messages.
    idle_timeout: float | None = Field(default=300.0, gt=0)
    # Open websockets one process holds at most; the next upgrade gets 503.
    max_connections: int = Field(default=1000, ge=1)
    # Seconds one send of a forwarded message may wait for a client that does not read
    # before the socket is closed with 1013, whatever channels.when_full says.
    send_timeout: float = Field(default=10.0, gt=0)
    # Offer permessage-deflate to clients that ask (browsers do). Off: each socket that
    # compresses holds a zlib compressor (about 90 KiB) and a broadcast compresses every
    # message once per subscriber.
    compress: bool = False
    # Refuse (403, before the upgrade) a browser's websocket from another site: its
    # Origin must be the site's own or an allowed host (security.allowed_hosts) or one
    # of security.csrf_trusted_origins.
    check_origin: bool = True


class SseSettings(Section):
    """Every server-sent event stream (docs/sse.md)."""

    # Seconds between keep-alive comments, so proxies and browsers keep the stream open.
    keepalive: float = Field(default=15.0, gt=0)
    # Open streams one process holds at most; the next gets 503.
    max_connections: int = Field(default=1000, ge=1)
    # Seconds one write may wait for a client that does not read before the stream is
    # dropped (the browser reconnects and resumes from its last id).
    send_timeout: float = Field(default=10.0, gt=0)
    # Milliseconds a browser waits before it reconnects (the ``retry:`` field).
    retry_ms: int = Field(default=3000, ge=0)
