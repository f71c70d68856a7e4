"""The peer: a websocket broadcast server hand-written on bare aiohttp, as an expert
writes one: a set of ``WebSocketResponse`` objects and a loop of ``send_str``.

    python -m ws.peer --port 8080 [--backend memory|redis|postgres] [--url URL]
                      [--channel NAME]

- ``GET /subscribe``: a websocket that receives every published message;
- ``GET /publish``: a websocket whose every text message is published;
- ``GET /ready``, ``GET /stats`` (``{"subscribers": n}``), ``GET /gc`` for the harness.

memory: a published message is sent to every local socket at once. redis: it is
PUBLISHed (redis.asyncio), and each process reads its one pub/sub connection and sends
what arrives to its sockets. postgres: ``pg_notify`` on an asyncpg pool, and each process
LISTENs on one asyncpg connection. uvloop, no access log, and the same 30 s heartbeat
as aiosite's default websocket.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Iterable
from typing import Any, Protocol

import uvloop
from aiohttp import web

HEARTBEAT = 30.0


class Transport(Protocol):
    async def publish(self, text: str) -> None: ...


SOCKETS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("sockets")
TRANSPORT: web.AppKey[Transport] = web.AppKey("transport")


async def send_to_all(sockets: Iterable[web.WebSocketResponse], text: str) -> None:
    # A copy: the set changes while a send waits for a slow socket to drain.
    for ws in tuple(sockets):
        with contextlib.suppress(ConnectionError):
            await ws.send_str(text)


class Memory:
    def __init__(self, sockets: set[web.WebSocketResponse]) -> None:
        self.sockets = sockets

    async def publish(self, text: str) -> None:
        await send_to_all(self.sockets, text)


class RedisPubSub:
    def __init__(self, sockets: set[web.WebSocketResponse], url: str, channel: str) -> None:
        import redis.asyncio as redis

        self.sockets = sockets
        self.channel = channel
        self.client = redis.Redis.from_url(url, decode_responses=True)

    async def start(self) -> asyncio.Task[None]:
        pubsub = self.client.pubsub()
        await pubsub.subscribe(self.channel)
        return asyncio.create_task(self._read(pubsub))

    async def _read(self, pubsub: Any) -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                await send_to_all(self.sockets, message["data"])

    async def publish(self, text: str) -> None:
        await self.client.publish(self.channel, text)

    async def close(self) -> None:
        await self.client.aclose()


class PostgresNotify:
    def __init__(self, sockets: set[web.WebSocketResponse], dsn: str, channel: str) -> None:
        self.sockets = sockets
        self.dsn = dsn
        self.channel = channel
        # Notifications arrive in a callback; one task sends them in order.
        self.queue: asyncio.Queue[str] = asyncio.Queue()

    async def start(self) -> asyncio.Task[None]:
        import asyncpg

        self.pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=4)
        self.listener = await asyncpg.connect(self.dsn)
        await self.listener.add_listener(self.channel, self._notified)
        return asyncio.create_task(self._send())

    def _notified(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        self.queue.put_nowait(payload)

    async def _send(self) -> None:
        while True:
            await send_to_all(self.sockets, await self.queue.get())

    async def publish(self, text: str) -> None:
        await self.pool.execute("SELECT pg_notify($1, $2)", self.channel, text)

    async def close(self) -> None:
        await self.listener.close()
        await self.pool.close()


async def subscribe(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT)
    await ws.prepare(request)
    sockets = request.app[SOCKETS]
    sockets.add(ws)
    try:
        async for _ in ws:  # subscribers only listen; reading notices when they leave
            pass
    finally:
        sockets.discard(ws)
    return ws


async def publish(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT)
    await ws.prepare(request)
    transport = request.app[TRANSPORT]
    async for message in ws:
        if message.type is web.WSMsgType.TEXT:
            await transport.publish(message.data)
    return ws


async def ready(request: web.Request) -> web.Response:
    return web.Response(text="ready")


async def stats(request: web.Request) -> web.Response:
    return web.json_response({"subscribers": len(request.app[SOCKETS])})


async def collect(request: web.Request) -> web.Response:
    return web.json_response({"collected": gc.collect()})


def create_app(backend: str, url: str | None, channel: str) -> web.Application:
    app = web.Application()
    sockets: set[web.WebSocketResponse] = set()
    app[SOCKETS] = sockets

    async def transport_ctx(app: web.Application) -> AsyncIterator[None]:
        if backend == "memory":
            app[TRANSPORT] = Memory(sockets)
            yield
            return
        if url is None:
            raise SystemExit(f"--backend {backend} needs --url")
        remote = (
            RedisPubSub(sockets, url, channel)
            if backend == "redis"
            else PostgresNotify(sockets, url, channel)
        )
        reader = await remote.start()
        app[TRANSPORT] = remote
        yield
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await remote.close()

    async def close_sockets(app: web.Application) -> None:
        for ws in tuple(sockets):
            await ws.close(code=1001)

    app.cleanup_ctx.append(transport_ctx)
    app.on_shutdown.append(close_sockets)
    app.router.add_get("/subscribe", subscribe)
    app.router.add_get("/publish", publish)
    app.router.add_get("/ready", ready)
    app.router.add_get("/stats", stats)
    app.router.add_get("/gc", collect)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--backend", choices=("memory", "redis", "postgres"), default="memory")
    parser.add_argument("--url", help="redis:// or postgresql:// URL of the backend")
    parser.add_argument("--channel", default="bench")
    args = parser.parse_args()
    web.run_app(
        create_app(args.backend, args.url, args.channel),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
