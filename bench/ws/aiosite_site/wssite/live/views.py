"""The room's handlers, written as the docs show (docs/websockets.md)."""

import gc

from aiohttp import web

from aiosite import broadcast, json_response, open_websocket, settings_of

from .config import LiveSettings


def channel_of(request: web.Request) -> str:
    return settings_of(request).section(LiveSettings).channel


async def subscribe(request: web.Request) -> web.WebSocketResponse:
    """Every message published on the channel, to this socket."""
    async with (
        open_websocket(request) as ws,
        broadcast(request).subscribe(channel_of(request)) as subscription,
    ):
        ws.forward(subscription)
        async for _ in ws:  # subscribers only listen
            pass
    return ws


async def publish(request: web.Request) -> web.WebSocketResponse:
    """Each message the client sends, published on the channel."""
    hub = broadcast(request)
    channel = channel_of(request)
    async with open_websocket(request) as ws:
        async for message in ws:
            await hub.publish(channel, message.json())
    return ws


async def ready(request: web.Request) -> web.Response:
    return web.Response(text="ready")


async def stats(request: web.Request) -> web.Response:
    return json_response({"subscribers": broadcast(request).subscriber_count(channel_of(request))})


async def collect(request: web.Request) -> web.Response:
    return json_response({"collected": gc.collect()})
