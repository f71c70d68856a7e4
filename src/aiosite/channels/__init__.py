"""Live pages: the broadcast hub (memory, Redis or PostgreSQL), websockets and
server-sent events (docs/broadcast.md, docs/websockets.md, docs/sse.md).

The battery puts the site's ``Hub`` on the application (``broadcast(request)``) and closes
it when the site stops, and keeps the registry of open websockets and event streams
(``live_connections``), which closes them when the site stops; nothing connects before
the first publish or subscription, and a site that uses none of this pays nothing per
request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

from aiohttp import web

from aiosite.apps import AppRegistry
from aiosite.battery import Battery
from aiosite.channels.config import ChannelsSettings, SseSettings, WebSocketSettings
from aiosite.channels.errors import ChannelUnavailable, MessageTooLarge, SubscriberTooSlow
from aiosite.channels.factory import make_hub
from aiosite.channels.forwarding import Forward
from aiosite.channels.hub import Hub, Message, Subscription
from aiosite.channels.live import (
    LIVE,
    LIVE_RESPONSE,
    RETRY_AFTER,
    LiveCounts,
    LiveRegistry,
    hub_unavailable,
    live_connections,
)
from aiosite.channels.sse import SiteEventStream, open_event_stream, stream_channel
from aiosite.channels.websockets import SiteWebSocket, open_websocket
from aiosite.hooks import hooks_of
from aiosite.keys import state_of
from aiosite.probes import MetricSample, probes_of
from aiosite.services.redis import add_redis_check
from aiosite.settings import Settings

HUB: web.AppKey[Hub] = web.AppKey("aiosite.hub", Hub)


def broadcast(target: web.Request | web.Application) -> Hub:
    """The site's broadcast hub, from a request or the application."""
    hub: Hub = state_of(target)[HUB]
    return hub


def _hub_unavailable_page(
    request: web.Request, exc: ChannelUnavailable
) -> web.StreamResponse | None:
    started: web.StreamResponse | None = request.get(LIVE_RESPONSE)
    if started is not None:
        # Raised after the block of a websocket or an event stream: its response went
        # out, and no page can follow it (that block handles what is raised inside it).
        hub_unavailable(request, exc, "its response had started, nothing more was sent")
        return started
    hub_unavailable(request, exc, "answered 503")
    raise web.HTTPServiceUnavailable(
        text="Live updates are unavailable for a moment; try again shortly.",
        headers={"Retry-After": RETRY_AFTER},
    )


def _attach(app: web.Application, settings: Settings, registry: AppRegistry) -> None:
    hub = app[HUB] = make_hub(settings)
    hooks_of(app).add_exception_handler(ChannelUnavailable, _hub_unavailable_page)
    live = app[LIVE] = LiveRegistry(
        settings.section(WebSocketSettings),
        settings.section(SseSettings),
        settings.security.server_header,
    )
    # Before the server waits for handlers (and cancels them): sockets close with 1001
    # and streams end, so the handlers finish by themselves.
    app.on_shutdown.append(live.shutdown)
    _report(app, settings, live)

    async def hub_ctx(app: web.Application) -> AsyncIterator[None]:
        yield
        await live.stop()
        await hub.close()

    app.cleanup_ctx.append(hub_ctx)


def _report(app: web.Application, settings: Settings, live: LiveRegistry) -> None:
    """The open connections for ``/metrics``; the hub's Redis for ``/readyz``."""
    probes = probes_of(app)
    probes.add_metrics_source(lambda: _live_samples(live))
    config = settings.section(ChannelsSettings)
    if config.backend == "redis":
        ping = add_redis_check(probes, settings, config.url or settings.redis.url, "broadcast")
        if ping is not None:
            app.on_cleanup.append(ping.close)


def _live_samples(live: LiveRegistry) -> Iterable[MetricSample]:
    counts = live.counts()
    return (
        MetricSample(
            "aiosite_websocket_connections", "Open websockets.", "gauge", counts.websockets
        ),
        MetricSample(
            "aiosite_event_streams", "Open event streams (SSE).", "gauge", counts.event_streams
        ),
    )


battery = Battery(
    "aiosite.channels",
    _attach,
    {"channels": ChannelsSettings, "websockets": WebSocketSettings, "sse": SseSettings},
)
setup = battery.setup

__all__ = [
    "HUB",
    "LIVE",
    "ChannelUnavailable",
    "ChannelsSettings",
    "Forward",
    "Hub",
    "LiveCounts",
    "Message",
    "MessageTooLarge",
    "SiteEventStream",
    "SiteWebSocket",
    "SseSettings",
    "SubscriberTooSlow",
    "Subscription",
    "WebSocketSettings",
    "broadcast",
    "live_connections",
    "open_event_stream",
    "open_websocket",
    "setup",
    "stream_channel",
]
