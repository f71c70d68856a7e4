"""What the hub tests share: hubs on the memory backend, reading a subscription with a
deadline, probing until a reconnected hub delivers again, the hub's log lines, a proxy
that goes silent, and a small chat site."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from aiosite import Message, Subscription
from aiosite.channels import ChannelsSettings, Hub
from aiosite.channels.factory import make_hub
from aiosite.settings import settings_class
from tests.conftest import POSTGRESQL_URL, REDIS_ADDRESS, ProjectFactory, require_service

# The Redis database of the channels tests (they delete only their own keys).
REDIS_DB = 11


@contextlib.asynccontextmanager
async def own_database(options: str = "") -> AsyncIterator[str]:
    """The URL of a PostgreSQL database of the caller's own (``CREATE DATABASE ...
    <options>``), dropped after it."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    admin_url = POSTGRESQL_URL.replace("+asyncpg", "")
    name = f"aiosite_channels_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" {options}')
    finally:
        await admin.close()
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def memory_hub(**channels: Any) -> Hub:
    """A hub on the memory backend, as a site's ``channels:`` settings make it."""
    settings = settings_class({"channels": ChannelsSettings}).model_construct(
        channels=ChannelsSettings(**channels)
    )
    return make_hub(settings)


async def receive(subscription: Subscription, within: float = 5.0) -> Message:
    async with asyncio.timeout(within):
        return await anext(subscription)


async def until_delivered(
    hub: Hub, subscription: Subscription, channel: str, within: float = 10.0
) -> Message:
    """Publish probes until one reaches ``subscription`` (its hub has reconnected)."""
    async with asyncio.timeout(within):
        for n in range(10_000):
            await hub.publish(channel, {"probe": n})
            try:
                return await receive(subscription, within=0.2)
            except TimeoutError:
                continue
    raise AssertionError("unreachable")


async def eventually_true(check: Any, within: float = 5.0) -> None:
    """Until ``await check()`` is true (a server's state: polled, nothing to wait on)."""
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def hub_records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "aiosite.channels" and r.levelno == level
    ]


class Calls:
    """A subscription listener that counts its calls."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


class SilentProxy:
    """Forwards to ``target`` until ``silent`` is set, then passes nothing either way and
    keeps every socket open: a server that vanished behind a network that drops packets.
    ``mute_after``: pass only that many of a client's first reads to the server, then
    nothing more from that client (the server answered its start, then nothing)."""

    def __init__(
        self, target: tuple[str, int] = REDIS_ADDRESS, mute_after: int | None = None
    ) -> None:
        self.target = target
        self.silent = False
        self.mute_after = mute_after
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()
        await asyncio.sleep(0.05)  # the handlers see their sockets closed

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, up_writer}

        async def pipe(
            source: asyncio.StreamReader, target: asyncio.StreamWriter, limit: int | None
        ) -> None:
            passed = 0
            with contextlib.suppress(ConnectionError, OSError):
                while data := await source.read(65536):
                    passed += 1
                    if not self.silent and (limit is None or passed <= limit):
                        target.write(data)
                        await target.drain()
            target.transport.abort()

        try:
            await asyncio.gather(
                pipe(reader, up_writer, self.mute_after), pipe(up_reader, writer, None)
            )
        finally:
            self._writers -= {writer, up_writer}


CHAT_INIT = 'from aiosite import App\n\napp = App("chat", prefix="/live")\n'
# A websocket that subscribes to its room, sends what the hub delivers and publishes
# what its client sends; and a POST that publishes.
CHAT_ROUTES = """\
import json

from aiohttp import web

from aiosite import Message, Routes, broadcast, csrf_exempt, json_response, open_websocket

routes = Routes()


def as_json(message: Message) -> str:
    return json.dumps({"data": message.data, "id": message.id})


@routes.websocket("/chat/{room}", name="chat")
async def chat(request: web.Request) -> web.WebSocketResponse:
    hub = broadcast(request)
    room = request.match_info["room"]
    async with open_websocket(request) as ws, hub.subscribe(room) as subscription:
        await ws.send_json({"ready": True})
        ws.forward(subscription, transform=as_json)
        async for msg in ws:
            await hub.publish(room, msg.json())
    return ws


@routes.post("/publish/{room}", name="publish")
@csrf_exempt
async def publish(request: web.Request) -> web.Response:
    message_id = await broadcast(request).publish(request.match_info["room"], await request.json())
    return json_response({"id": message_id})
"""


def chat_project(make_project: ProjectFactory, test_yaml: str = "{}\n") -> Path:
    return make_project(
        {"PKG/chat/__init__.py": CHAT_INIT, "PKG/chat/routes.py": CHAT_ROUTES},
        apps=["home", "chat"],
        env_yaml={"test": test_yaml},
    )
