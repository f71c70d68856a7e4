"""Websockets through the site's request core, over real sockets: the hub between two
clients, the origin check, the limits (message size, heartbeat, idle timeout,
connections), the session and request id, errors before and after the upgrade, a
client too slow to read, a client that vanishes, and the site stopping (in-process and
``aiosite run`` under SIGTERM/SIGINT)."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import signal
import socket
import struct
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer

from aiosite import SETTINGS, broadcast, live_connections, load_site
from aiosite.channels.live import SHUTDOWN_GRACE
from aiosite.cli import main
from aiosite.server.protocol import ConnectionLimits, GuardedAppRunner
from tests.channels.support import REDIS_DB
from tests.conftest import REDIS_ADDRESS, ProjectFactory, require_service, site_client
from tests.db.proxy import TcpProxy
from tests.e2e.test_run import Server, start  # noqa: F401 (the fixture)

LIVE_INIT = 'from aiosite import App\n\napp = App("live", prefix="")\n'
LIVE_ROUTES = """\
from aiohttp import WSMsgType, web
from sqlalchemy import text

from aiosite import (
    REQUEST_ID,
    Routes,
    broadcast,
    database_of,
    db_session,
    get_session,
    json_response,
    open_websocket,
)

routes = Routes()


@routes.get("/hello.json", name="hello")
async def hello(request: web.Request) -> web.Response:
    return json_response({"message": "Hello, World!"})


@routes.websocket("/ws/{room}", name="room")
async def room(request: web.Request) -> web.WebSocketResponse:
    name = request.match_info["room"]
    hub = broadcast(request)
    async with open_websocket(request) as ws, hub.subscribe(f"room:{name}") as sub:
        ws.forward(sub)
        async for msg in ws:
            await hub.publish(f"room:{name}", msg.json())
    return ws


@routes.websocket("/slow/{room}", name="slow")
async def slow(request: web.Request) -> web.WebSocketResponse:
    hub = broadcast(request)
    name = request.match_info["room"]
    async with (
        open_websocket(request) as ws,
        hub.subscribe(f"room:{name}", queue_size=4, when_full="disconnect") as sub,
    ):
        ws.forward(sub)
        async for msg in ws:
            pass
    return ws


def shout(message):
    data = message.data
    if data == "boom":
        raise ValueError("the transform broke")
    if data == "skip":
        return None
    return data.encode() if data.startswith("b:") else data.upper()


@routes.websocket("/shout/{room}", name="shout")
async def shouting(request: web.Request) -> web.WebSocketResponse:
    hub = broadcast(request)
    async with (
        open_websocket(request) as ws,
        hub.subscribe(f"room:{request.match_info['room']}") as sub,
    ):
        ws.forward(sub, transform=shout)
        async for msg in ws:
            pass
    return ws


@routes.websocket("/echo", name="echo")
async def echo(request: web.Request) -> web.WebSocketResponse:
    async with open_websocket(request) as ws:
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await ws.send_str(msg.data.upper())
    return ws


@routes.websocket("/quiet", name="quiet")
async def quiet(request: web.Request) -> web.WebSocketResponse:
    async with open_websocket(
        request, protocols=("chat.v2", "chat.v1"), heartbeat=None, idle_timeout=0.3
    ) as ws:
        await ws.send_str(ws.ws_protocol or "none")
        async for msg in ws:
            pass
    return ws


@routes.get("/remember", name="remember")
async def remember(request: web.Request) -> web.Response:
    session = await get_session(request)
    session["name"] = request.query["name"]
    return web.Response(text="remembered")


@routes.websocket("/whoami", name="whoami")
async def whoami(request: web.Request) -> web.WebSocketResponse:
    async with open_websocket(request) as ws:
        session = await get_session(request)
        await ws.send_json({"name": session.get("name"), "request_id": request[REQUEST_ID]})
        async for msg in ws:
            pass
    return ws


@routes.websocket("/pool", name="pool")
async def pool(request: web.Request) -> web.WebSocketResponse:
    await db_session(request).execute(text("SELECT 1"))
    engine = database_of(request).engine
    held = engine.pool.checkedout()
    async with open_websocket(request) as ws:
        await ws.send_json({"before": held, "after": engine.pool.checkedout()})
        async for msg in ws:
            pass
    return ws


@routes.websocket("/fails-before", name="fails_before")
async def fails_before(request: web.Request) -> web.WebSocketResponse:
    raise RuntimeError("broken before the upgrade")


@routes.websocket("/fails-after", name="fails_after")
async def fails_after(request: web.Request) -> web.WebSocketResponse:
    async with open_websocket(request) as ws:
        async for msg in ws:
            raise RuntimeError("broken after the upgrade")
    return ws


@routes.get("/notes", name="notes")
async def notes(request: web.Request) -> web.Response:
    session = db_session(request)
    await session.execute(text("CREATE TABLE IF NOT EXISTS notes (body TEXT)"))
    found = (await session.execute(text("SELECT body FROM notes"))).scalars().all()
    return json_response(sorted(found))


@routes.websocket("/writes-then-fails", name="writes_then_fails")
async def writes_then_fails(request: web.Request) -> web.WebSocketResponse:
    async with open_websocket(request) as ws:
        async for msg in ws:
            await db_session(request).execute(
                text("INSERT INTO notes VALUES (:body)"), {"body": msg.data}
            )
            raise RuntimeError("broken after a write")
    return ws


@routes.websocket("/publishes-after/{room}", name="publishes_after")
async def publishes_after(request: web.Request) -> web.WebSocketResponse:
    async with open_websocket(request) as ws:
        async for msg in ws:
            break
    await broadcast(request).publish(f"room:{request.match_info['room']}", "too late")
    return ws


@routes.websocket("/compressed", name="compressed")
async def compressed(request: web.Request) -> web.WebSocketResponse:
    async with open_websocket(request, compress=True) as ws:
        async for msg in ws:
            await ws.send_str(msg.data)
    return ws
"""
# A route added to the router directly carries no websocket marker: open_websocket
# runs the origin check itself.
LIVE_SITE = """\
from aiohttp import web

from aiosite import open_websocket


async def plain(request: web.Request) -> web.WebSocketResponse:
    async with open_websocket(request) as ws:
        await ws.send_str("plain")
        async for msg in ws:
            pass
    return ws


def setup(app, settings, registry):
    app.router.add_get("/plain-ws", plain)
"""


def live_project(make_project: ProjectFactory, test_yaml: str = "{}\n") -> Path:
    return make_project(
        {
            "PKG/live/__init__.py": LIVE_INIT,
            "PKG/live/routes.py": LIVE_ROUTES,
            "PKG/site.py": LIVE_SITE,
        },
        apps=["live"],
        env_yaml={"test": test_yaml},
        with_home=False,
    )


Client = TestClient[web.Request, web.Application]


class SiteServer(TestServer):
    """aiohttp's test server on aiosite's own runner, as ``aiosite run`` serves a site:
    in particular a handler is not cancelled when its client goes (aiohttp's default,
    which the test server turns on), so a site notices a vanished client by itself."""

    async def _make_runner(self, **kwargs: Any) -> web.BaseRunner:
        kwargs.pop("handler_cancellation", None)
        limits = ConnectionLimits.from_settings(self.app[SETTINGS])
        return GuardedAppRunner(self.app, limits=limits, **kwargs)


def port_of(client: Client) -> int:
    port = client.port
    assert port is not None
    return port


def live_client(root: Path, env: str = "test") -> Client:
    """A test client on the project's site served as in production."""
    return TestClient(SiteServer(load_site(root, env)))


async def eventually(check: Callable[[], bool], within: float = 3.0) -> None:
    """Wait until ``check()`` holds (the server's side of a socket settles on its loop)."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {within} s: {check}")
        await asyncio.sleep(0.02)


async def receive(ws: aiohttp.ClientWebSocketResponse, within: float = 3.0) -> aiohttp.WSMessage:
    async with asyncio.timeout(within):
        return await ws.receive()


async def closing_message(
    ws: aiohttp.ClientWebSocketResponse, within: float = 3.0
) -> aiohttp.WSMessage:
    """The first message that is no data or ping: how the server ended the socket."""
    async with asyncio.timeout(within):
        while True:
            message = await ws.receive()
            if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.PING):
                return message


class Inbox:
    """A client socket read all the time, as a browser's is (so that it answers the
    server's pings: aiohttp's client answers them while it reads); what came, queued."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.messages: asyncio.Queue[aiohttp.WSMessage] = asyncio.Queue()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            message = await self.ws.receive()
            await self.messages.put(message)
            if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR):
                return

    async def next(self, within: float = 3.0) -> aiohttp.WSMessage:
        async with asyncio.timeout(within):
            return await self.messages.get()


# -- a site whose hub is on Redis, through a proxy a test can cut -------------------------


@pytest.fixture
async def redis_proxy() -> AsyncIterator[TcpProxy]:
    """A proxy to the shared Redis: ``stop()`` is an outage for the site behind it only."""
    require_service("Redis", *REDIS_ADDRESS)
    proxy = TcpProxy(REDIS_ADDRESS)
    await proxy.start()
    yield proxy
    await proxy.stop()


@pytest.fixture
async def channel_name() -> AsyncIterator[str]:
    """A name of the test's own; its history in Redis is deleted after the test."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    client = aioredis.Redis(host=REDIS_ADDRESS[0], port=REDIS_ADDRESS[1], db=REDIS_DB)
    try:
        keys = [key async for key in client.scan_iter(match=f"aiosite:channels:*{name}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def redis_hub_yaml(port: int) -> str:
    """A site's hub on Redis at 127.0.0.1:``port``, with short timeouts and backoff."""
    return (
        f"redis:\n  url: redis://127.0.0.1:{port}/{REDIS_DB}\n"
        "  connect_timeout: 0.5\n  socket_timeout: 0.5\n"
        "channels:\n  backend: redis\n  reconnect:\n    initial: 0.05\n    max: 0.2\n"
    )


# -- a websocket client on a raw socket (what aiohttp's client does not let a test do) --


def upgrade_head(path: str, port: int, headers: dict[str, str] | None = None) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class RawSocket:
    """A websocket client speaking the protocol itself, on a socket the test controls."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.status = 0
        self.headers: dict[str, str] = {}

    @classmethod
    async def connect(
        cls,
        port: int,
        path: str,
        headers: dict[str, str] | None = None,
        *,
        receive_buffer: int | None = None,
    ) -> RawSocket:
        sock = socket.socket()
        if receive_buffer is not None:
            # Set before connecting: the window the server may fill stays this small.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=2**22)
        raw = cls(reader, writer)
        writer.write(upgrade_head(path, port, headers))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        status_line, *header_lines = head.decode().split("\r\n")
        raw.status = int(status_line.split()[1])
        raw.headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in header_lines if line)
        }
        return raw

    async def frame(self, within: float = 10.0) -> tuple[int, bytes]:
        """The next frame from the server: (opcode, payload)."""
        async with asyncio.timeout(within):
            first, second = await self.reader.readexactly(2)
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
            return first & 0x0F, await self.reader.readexactly(length)

    async def close_code(self, within: float = 10.0) -> int:
        """Read up to the server's close frame; its code."""
        while True:
            opcode, payload = await self.frame(within)
            if opcode == 0x8:
                code: int = struct.unpack("!H", payload[:2])[0]
                return code

    def vanish(self) -> None:
        """Drop the connection without a close frame (a laptop lid shut, a lost network)."""
        self.writer.transport.abort()

    def read_nothing(self, stop: bool = True) -> None:
        """Take nothing more off the connection (its buffers fill up), or again."""
        transport = self.writer.transport
        assert isinstance(transport, asyncio.ReadTransport)
        if stop:
            transport.pause_reading()
        else:
            transport.resume_reading()


# -- the hub between clients ------------------------------------------------------------


async def test_two_clients_exchange_messages_through_the_hub(make_project: ProjectFactory) -> None:
    async with live_client(live_project(make_project)) as client:
        hub = broadcast(client.app)
        async with client.ws_connect("/ws/lobby") as ada, client.ws_connect("/ws/lobby") as bob:
            await eventually(lambda: hub.subscriber_count("room:lobby") == 2)
            assert live_connections(client.app).websockets == 2
            await ada.send_json({"from": "ada", "text": "hello"})
            for ws in (ada, bob):
                assert (await receive(ws)).json() == {"from": "ada", "text": "hello"}
            await bob.send_json({"from": "bob", "text": "hi"})
            for ws in (ada, bob):
                assert (await receive(ws)).json() == {"from": "bob", "text": "hi"}
            # Another room hears nothing of it.
            async with client.ws_connect("/ws/elsewhere") as other:
                await eventually(lambda: hub.subscriber_count("room:elsewhere") == 1)
                await hub.publish("room:elsewhere", "only here")
                assert (await receive(other)).json() == "only here"
            await hub.publish("room:lobby", "next")
            assert (await receive(ada)).json() == "next"
            await ada.close()
            assert ada.close_code == WSCloseCode.OK
        await eventually(lambda: live_connections(client.app).total == 0)
        assert hub.subscriber_count() == 0


# -- the origin check -------------------------------------------------------------------


async def test_a_websocket_from_another_site_is_refused_with_403_before_the_upgrade(
    make_project: ProjectFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async with live_client(live_project(make_project)) as client:
        hub = broadcast(client.app)
        for origin in ("https://evil.example", "http://127.0.0.1.evil.example", "null"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await client.ws_connect("/ws/lobby", headers={"Origin": origin})
            assert refused.value.status == 403
        # The site's error page, with a request id, and nothing was opened for it.
        raw = await RawSocket.connect(
            port_of(client), "/ws/lobby", {"Origin": "https://evil.example", "Accept": "text/html"}
        )
        assert raw.status == 403
        assert raw.headers["content-type"].startswith("text/html")
        assert raw.headers["x-request-id"]
        body = await raw.reader.read(int(raw.headers["content-length"]))
        assert b"another site" in body
        raw.writer.close()
        assert hub.subscriber_count() == 0
        assert live_connections(client.app).total == 0
    assert "Refused a websocket from another site (Origin: https://evil.example)" in caplog.text


async def test_the_sites_own_an_allowed_and_a_trusted_origin_and_none_are_accepted(
    make_project: ProjectFactory,
) -> None:
    root = live_project(
        make_project, "security:\n  csrf_trusted_origins: ['https://app.example.com']\n"
    )
    async with live_client(root) as client:
        own = f"http://127.0.0.1:{port_of(client)}"
        for headers in (
            {"Origin": own},
            {"Origin": "http://localhost:5173"},  # an allowed host, another port
            {"Origin": "https://app.example.com"},
            {},  # no browser: nothing to hijack
        ):
            async with client.ws_connect("/echo", headers=headers) as ws:
                await ws.send_str("ok")
                assert (await receive(ws)).data == "OK"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect("/echo", headers={"Origin": "https://other.example.com"})
        assert refused.value.status == 403


async def test_on_https_an_allowed_hosts_origin_counts_only_on_https_and_port_443(
    make_project: ProjectFactory,
) -> None:
    root = live_project(
        make_project,
        "security:\n  trust_proxy_headers: true\n"
        "  csrf_trusted_origins: ['https://app.example.com:8443']\n",
    )
    async with live_client(root) as client:
        https = {"X-Forwarded-Proto": "https"}
        own = f"https://127.0.0.1:{port_of(client)}"
        for origin in (own, "https://localhost", "https://app.example.com:8443"):
            async with client.ws_connect("/echo", headers={**https, "Origin": origin}) as ws:
                await ws.send_str("ok")
                assert (await receive(ws)).data == "OK"
        for origin in (
            "http://localhost",  # the allowed host's clear-text page
            "http://localhost:5173",
            "https://localhost:8443",  # another service of that host
            f"http://127.0.0.1:{port_of(client)}",  # the site's own, but not as served
            "https://app.example.com",  # a trusted origin is exact: its port too
        ):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await client.ws_connect("/echo", headers={**https, "Origin": origin})
            assert refused.value.status == 403, origin


async def test_open_websocket_checks_the_origin_on_a_route_added_to_the_router(
    make_project: ProjectFactory,
) -> None:
    async with live_client(live_project(make_project)) as client:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect("/plain-ws", headers={"Origin": "https://evil.example"})
        assert refused.value.status == 403
        async with client.ws_connect(
            "/plain-ws", headers={"Origin": f"http://127.0.0.1:{port_of(client)}"}
        ) as ws:
            assert (await receive(ws)).data == "plain"


async def test_check_origin_off_accepts_another_sites_websocket(
    make_project: ProjectFactory,
) -> None:
    root = live_project(make_project, "websockets:\n  check_origin: false\n")
    async with live_client(root) as client:
        for path in ("/echo", "/plain-ws"):
            async with client.ws_connect(path, headers={"Origin": "https://evil.example"}):
                pass


MIDDLEWARE_SITE = """\
from aiohttp import web


@web.middleware
async def passing(request, handler):
    return await handler(request)


def setup(app, settings, registry):
    app.middlewares.append(passing)
"""


def test_the_origin_hook_runs_on_websocket_routes_only(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = live_project(make_project)
    with pytest.raises(SystemExit) as done:
        main(["--project", str(root), "routes", "--hooks"])
    assert done.value.code in (0, None)
    rows = capsys.readouterr().out.split(f"{root.name}.live.routes.")
    by_handler = {row.split()[0]: " ".join(row.split()) for row in rows[1:]}
    assert "aiosite.websocket_origin, aiosite.sessions" in by_handler["echo"]
    for plain in ("hello", "remember"):
        assert "aiosite.websocket_origin" not in by_handler[plain]


async def test_with_a_middleware_the_origin_hook_still_leaves_other_routes_alone(
    make_project: ProjectFactory,
) -> None:
    # The core then runs every hook on every request: the hook looks at the route itself.
    root = make_project(
        {
            "PKG/live/__init__.py": LIVE_INIT,
            "PKG/live/routes.py": LIVE_ROUTES,
            "PKG/site.py": MIDDLEWARE_SITE,
        },
        apps=["live"],
        with_home=False,
    )
    async with live_client(root) as client:
        evil = {"Origin": "https://evil.example"}
        assert (await client.get("/hello.json", headers=evil)).status == 200
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect("/echo", headers=evil)
        assert refused.value.status == 403
        async with client.ws_connect("/echo", headers={"Origin": "http://localhost"}) as ws:
            await ws.send_str("through")
            assert (await receive(ws)).data == "THROUGH"


async def test_forward_sends_what_a_transform_makes_of_each_message(
    make_project: ProjectFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        live_client(live_project(make_project)) as client,
        client.ws_connect("/shout/news") as ws,
    ):
        hub = broadcast(client.app)
        await eventually(lambda: hub.subscriber_count("room:news") == 1)
        for data in ("hello", "skip", "b:raw", "boom"):
            await hub.publish("room:news", data)
        text = await receive(ws)
        assert (text.type, text.data) == (WSMsgType.TEXT, "HELLO")
        binary = await receive(ws)  # "skip" sent nothing
        assert (binary.type, binary.data) == (WSMsgType.BINARY, b"b:raw")
        closing = await closing_message(ws)
        assert (closing.type, closing.data) == (WSMsgType.CLOSE, WSCloseCode.INTERNAL_ERROR)
    logged = [r for r in caplog.records if "the transform broke" in str(r.exc_info)]
    assert len(logged) == 1
    assert "Forwarding room:news to a websocket (/shout/news) failed" in logged[0].getMessage()


async def test_an_idle_forwarded_socket_holds_no_task(make_project: ProjectFactory) -> None:
    async with live_client(live_project(make_project)) as client:
        hub = broadcast(client.app)
        plain = [await client.ws_connect("/echo")]
        await eventually(lambda: live_connections(client.app).websockets == 1)
        await asyncio.sleep(0.1)

        async def tasks_of(path: str) -> int:
            """The tasks five more sockets of ``path`` add, once they settled."""
            before = len(asyncio.all_tasks())
            plain.extend([await client.ws_connect(path) for _ in range(5)])
            opened = len(plain)
            await eventually(lambda: live_connections(client.app).websockets == opened)
            await asyncio.sleep(0.1)
            return len(asyncio.all_tasks()) - before

        echoing = await tasks_of("/echo")
        forwarded = await tasks_of("/ws/quiet-room")
        # A socket fed from the hub costs no task more than one that is not...
        assert forwarded == echoing
        assert hub.subscriber_count("room:quiet-room") == 5
        settled = len(asyncio.all_tasks())
        await hub.publish("room:quiet-room", {"n": 1})
        for ws in plain[-5:]:
            assert (await receive(ws)).json() == {"n": 1}
        # ...and a delivery leaves none behind.
        await eventually(lambda: len(asyncio.all_tasks()) == settled)
        for ws in plain:
            await ws.close()


async def test_compression_is_off_unless_the_settings_or_the_route_turn_it_on(
    make_project: ProjectFactory,
) -> None:
    async with live_client(live_project(make_project)) as client:
        # Browsers offer permessage-deflate; aiohttp's client does when asked to.
        async with client.ws_connect("/echo", compress=15) as plain:
            assert plain.compress == 0
        async with client.ws_connect("/compressed", compress=15) as deflated:
            assert deflated.compress == 15
            await deflated.send_str("squeezed " * 100)
            assert (await receive(deflated)).data == "squeezed " * 100
    root = live_project(make_project, "websockets:\n  compress: true\n")
    async with live_client(root) as client, client.ws_connect("/echo", compress=15) as ws:
        assert ws.compress == 15
        await ws.send_str("on")
        assert (await receive(ws)).data == "ON"


# -- limits -----------------------------------------------------------------------------


async def test_a_message_over_max_message_bytes_closes_the_socket_with_1009(
    make_project: ProjectFactory,
) -> None:
    root = live_project(make_project, "websockets:\n  max_message_bytes: 1024\n")
    async with live_client(root) as client, client.ws_connect("/echo") as ws:
        await ws.send_str("a" * 1024)
        assert (await receive(ws)).data == "A" * 1024
        await ws.send_str("a" * 1025)
        closing = await closing_message(ws)
        assert closing.type is WSMsgType.CLOSE
        assert closing.data == WSCloseCode.MESSAGE_TOO_BIG
        await eventually(lambda: live_connections(client.app).total == 0)


async def test_the_heartbeat_drops_a_client_that_does_not_answer_pings(
    make_project: ProjectFactory,
) -> None:
    root = live_project(make_project, "websockets:\n  heartbeat: 0.2\n")
    async with live_client(root) as client:
        hub = broadcast(client.app)
        async with client.ws_connect("/ws/beat") as answering:
            inbox = Inbox(answering)
            async with client.ws_connect("/ws/beat", autoping=False) as silent:
                started = time.monotonic()
                pinged = await receive(silent)
                assert pinged.type is WSMsgType.PING
                ended = await closing_message(silent)
                assert ended.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR)
                assert time.monotonic() - started < 2
            await eventually(lambda: hub.subscriber_count("room:beat") == 1)
            assert live_connections(client.app).websockets == 1
            # The one that answers its pings stays.
            await asyncio.sleep(0.6)
            assert not answering.closed
            await answering.send_json("still here")
            assert (await inbox.next()).json() == "still here"


async def test_the_idle_timeout_closes_a_silent_client_with_1000_pings_do_not_count(
    make_project: ProjectFactory,
) -> None:
    root = live_project(make_project, "websockets:\n  idle_timeout: 0.4\n  heartbeat: 0.1\n")
    async with live_client(root) as client:
        async with client.ws_connect("/echo") as talking, client.ws_connect("/echo") as silent:
            started = time.monotonic()
            talks, quiet = Inbox(talking), Inbox(silent)
            # Messages keep a socket open well past the timeout...
            for _ in range(8):
                await talking.send_str("x")
                assert (await talks.next()).data == "X"
                await asyncio.sleep(0.1)
            assert not talking.closed
            # ...answered pings (heartbeat: 0.1) do not.
            closing = await quiet.next()
            assert closing.type is WSMsgType.CLOSE
            assert closing.data == WSCloseCode.OK
            assert closing.extra == "idle timeout"
            assert 0.4 <= time.monotonic() - started < 3
            await talking.send_str("y")
            assert (await talks.next()).data == "Y"
        await eventually(lambda: live_connections(client.app).total == 0)


async def test_open_websocket_overrides_the_settings_per_call(
    make_project: ProjectFactory,
) -> None:
    # The settings' idle timeout is 300 s; this route's is 0.3 s, without pings.
    async with (
        live_client(live_project(make_project)) as client,
        client.ws_connect("/quiet", protocols=("chat.v1",), autoping=False) as ws,
    ):
        assert ws.protocol == "chat.v1"
        assert (await receive(ws)).data == "chat.v1"
        closing = await receive(ws)  # no ping came before it
        assert closing.type is WSMsgType.CLOSE
        assert closing.extra == "idle timeout"


async def test_the_connection_limit_answers_503_with_retry_after(
    make_project: ProjectFactory,
) -> None:
    root = live_project(make_project, "websockets:\n  max_connections: 2\n")
    async with (
        live_client(root) as client,
        client.ws_connect("/echo"),
        client.ws_connect("/echo") as second,
    ):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect("/echo")
        assert refused.value.status == 503
        assert refused.value.headers is not None
        assert refused.value.headers["Retry-After"] == "5"
        # Other routes are not affected.
        assert (await client.get("/hello.json")).status == 200
        await second.close()
        await eventually(lambda: live_connections(client.app).websockets == 1)
        async with client.ws_connect("/echo") as third:
            await third.send_str("in")
            assert (await receive(third)).data == "IN"


# -- the request core: session, request id, errors --------------------------------------


async def test_the_session_and_request_id_reach_the_handler_and_the_101(
    make_project: ProjectFactory,
) -> None:
    async with live_client(live_project(make_project)) as client:
        assert await (await client.get("/remember?name=ada")).text() == "remembered"
        async with client.ws_connect("/whoami", headers={"X-Request-ID": "ws-test-1"}) as ws:
            assert (await receive(ws)).json() == {"name": "ada", "request_id": "ws-test-1"}
        cookie = "; ".join(f"{c.key}={c.value}" for c in client.session.cookie_jar)
        raw = await RawSocket.connect(port_of(client), "/whoami", {"Cookie": cookie})
        assert raw.status == 101
        assert raw.headers["x-request-id"]
        assert raw.headers["server"] == "aiosite"
        opcode, payload = await raw.frame()
        assert opcode == 0x1
        assert b'"name":"ada"' in payload.replace(b" ", b"")
        assert raw.headers["x-request-id"].encode() in payload
        raw.writer.close()


async def test_the_upgrade_gives_back_the_database_connection_the_request_held(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    database = f"database:\n  url: sqlite+aiosqlite:///{tmp_path}/live.sqlite3\n"
    async with (
        live_client(live_project(make_project, database)) as client,
        client.ws_connect("/pool") as ws,
    ):
        # The request's session is committed before the 101: a socket open for hours
        # holds no pooled connection.
        assert (await receive(ws)).json() == {"before": 1, "after": 0}


async def test_an_exception_before_the_upgrade_is_the_sites_error_page(
    make_project: ProjectFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async with live_client(live_project(make_project)) as client:
        raw = await RawSocket.connect(port_of(client), "/fails-before", {"Accept": "text/html"})
        assert raw.status == 500
        assert raw.headers["content-type"].startswith("text/html")
        assert raw.headers["x-request-id"]
        raw.writer.close()
    logged = [r for r in caplog.records if "broken before the upgrade" in str(r.exc_info)]
    assert len(logged) == 1


# aiohttp's test server cancels the handler of a lost connection; aiosite's servers do not.
@pytest.mark.parametrize("make_client", [live_client, site_client])
async def test_an_exception_after_the_upgrade_closes_with_1011_and_is_logged_once(
    make_project: ProjectFactory,
    caplog: pytest.LogCaptureFixture,
    make_client: Callable[[Path], Client],
) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    async with make_client(live_project(make_project)) as client:
        async with client.ws_connect("/fails-after") as ws:
            await ws.send_str("anything")
            closing = await closing_message(ws)
            assert closing.type is WSMsgType.CLOSE
            assert closing.data == WSCloseCode.INTERNAL_ERROR
            assert closing.extra == "internal error"  # nothing of the exception
        await eventually(lambda: live_connections(client.app).total == 0)
        # The site goes on.
        async with client.ws_connect("/echo") as echo:
            await echo.send_str("after")
            assert (await receive(echo)).data == "AFTER"
    logged = [
        r for r in caplog.records if r.exc_info and "broken after the upgrade" in str(r.exc_info[1])
    ]
    assert len(logged) == 1
    assert logged[0].levelno == logging.ERROR
    assert "Unhandled RuntimeError in GET /fails-after" in logged[0].getMessage()
    assert "closed the websocket with 1011" in logged[0].getMessage()
    # No error page after the 101: the access log has the upgrade, not a 500.
    (access,) = [
        r.getMessage()
        for r in caplog.records
        if "GET /fails-after" in r.getMessage() and r.name == "aiohttp.access"
    ]
    assert '" 101 ' in access


async def test_an_exception_after_the_upgrade_rolls_back_what_the_block_wrote(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    database = f"database:\n  url: sqlite+aiosqlite:///{tmp_path}/notes.sqlite3\n"
    async with live_client(live_project(make_project, database)) as client:
        assert await (await client.get("/notes")).json() == []
        async with client.ws_connect("/writes-then-fails") as ws:
            await ws.send_str("half-done")
            closing = await closing_message(ws)
            assert closing.data == WSCloseCode.INTERNAL_ERROR
        await eventually(lambda: live_connections(client.app).total == 0)
        # Handled by the block, yet not taken for a success: nothing was committed.
        assert await (await client.get("/notes")).json() == []


# -- slow and vanished clients ----------------------------------------------------------


async def test_a_client_that_vanishes_is_cleaned_up_promptly(make_project: ProjectFactory) -> None:
    async with live_client(live_project(make_project)) as client:
        hub = broadcast(client.app)
        raw = await RawSocket.connect(port_of(client), "/ws/gone")
        assert raw.status == 101
        await eventually(lambda: hub.subscriber_count("room:gone") == 1)
        assert live_connections(client.app).websockets == 1
        raw.vanish()
        started = time.monotonic()
        await eventually(lambda: live_connections(client.app).total == 0, within=3)
        assert hub.subscriber_count() == 0
        assert time.monotonic() - started < 2


async def test_a_client_that_reads_nothing_is_closed_1013_without_stalling_the_others(
    make_project: ProjectFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiosite.channels")
    # The fast client's own queue holds the whole burst; the slow one's holds 4.
    root = live_project(make_project, "channels:\n  queue_size: 1000\n")
    async with live_client(root) as client:
        hub = broadcast(client.app)
        slow = await RawSocket.connect(port_of(client), "/slow/feed", receive_buffer=4096)
        assert slow.status == 101
        async with client.ws_connect("/ws/feed") as fast:
            await eventually(lambda: hub.subscriber_count("room:feed") == 2)
            chunk = "x" * 60_000
            published = received = 0

            async def read_fast() -> None:
                nonlocal received
                while True:
                    message = await receive(fast, within=10)
                    assert message.type is WSMsgType.TEXT
                    received += 1

            reader = asyncio.create_task(read_fast())
            started = time.monotonic()
            # Published at a pace the fast client keeps up with, until the slow one's
            # pipe is full for good and its queue (4) overflows: the server gives up on
            # it by itself (its forwarder is stuck writing, so the site's sweep notices).
            while "/slow/feed) with 1013" not in caplog.text:
                assert published < 400, "the slow client was never closed"
                await hub.publish("room:feed", {"n": published, "chunk": chunk})
                published += 1
                await asyncio.sleep(0.01)
            await eventually(lambda: received == published, within=5)
            reader.cancel()
            assert time.monotonic() - started < 10
            # ...and it gets what fitted in the buffers, then the close frame.
            assert await slow.close_code(within=10) == WSCloseCode.TRY_AGAIN_LATER
            slow.writer.close()
            await eventually(lambda: hub.subscriber_count("room:feed") == 1, within=5)
            await hub.publish("room:feed", {"n": "after"})
            assert (await receive(fast)).json() == {"n": "after"}


async def test_a_send_stuck_past_send_timeout_closes_1013_even_under_drop_oldest(
    make_project: ProjectFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiosite.channels")
    # No heartbeat to find the client either, and a queue that never overflows: only
    # the bound on one send is left.
    yaml = "websockets:\n  send_timeout: 0.5\n  heartbeat: null\nchannels:\n  queue_size: 4\n"
    async with live_client(live_project(make_project, yaml)) as client:
        hub = broadcast(client.app)
        slow = await RawSocket.connect(port_of(client), "/ws/stuck", receive_buffer=4096)
        assert slow.status == 101
        await eventually(lambda: hub.subscriber_count("room:stuck") == 1)
        slow.read_nothing()  # reads nothing at all from now on
        chunk = "x" * 60_000
        published = 0
        while "(/ws/stuck) with 1013" not in caplog.text:
            assert published < 200, "the stuck client was never closed"
            await hub.publish("room:stuck", {"n": published, "chunk": chunk})
            published += 1
            await asyncio.sleep(0.05)
        assert "stuck in one send for over 0.5 s (websockets.send_timeout)" in caplog.text
        slow.read_nothing(stop=False)
        assert await slow.close_code(within=10) == WSCloseCode.TRY_AGAIN_LATER
        slow.writer.close()
        await eventually(lambda: hub.subscriber_count("room:stuck") == 0, within=5)


async def test_a_burst_beyond_the_queue_closes_with_1013_under_when_full_disconnect(
    make_project: ProjectFactory,
) -> None:
    async with live_client(live_project(make_project)) as client:
        hub = broadcast(client.app)
        async with client.ws_connect("/slow/burst") as ws:
            await eventually(lambda: hub.subscriber_count("room:burst") == 1)
            for n in range(10):  # the memory backend delivers them all at once
                await hub.publish("room:burst", n)
            closing = await closing_message(ws)
            assert closing.type is WSMsgType.CLOSE
            assert closing.data == WSCloseCode.TRY_AGAIN_LATER
            assert closing.extra == "too slow: messages were missed"
        await eventually(lambda: hub.subscriber_count() == 0)


# -- the hub failing under a socket -------------------------------------------------------


async def test_after_an_outage_of_the_hub_a_forwarded_socket_closes_with_1012(
    make_project: ProjectFactory, redis_proxy: TcpProxy, channel_name: str
) -> None:
    root = live_project(make_project, redis_hub_yaml(redis_proxy.port))
    async with live_client(root) as client:
        hub = broadcast(client.app)
        async with client.ws_connect(f"/ws/{channel_name}") as ws:
            inbox = Inbox(ws)
            await eventually(lambda: hub.subscriber_count(f"room:{channel_name}") == 1)
            await hub.publish(f"room:{channel_name}", "before")
            assert (await inbox.next()).json() == "before"
            # Redis out of reach for a moment: what was published meanwhile never came.
            await redis_proxy.stop()
            await asyncio.sleep(0.3)
            await redis_proxy.start()
            closing = await inbox.next(within=10)
            assert closing.type is WSMsgType.CLOSE
            assert closing.data == WSCloseCode.SERVICE_RESTART
            assert closing.extra == "messages may have been missed"
        await eventually(lambda: live_connections(client.app).total == 0)
        # A client that reconnects is fed again.
        async with client.ws_connect(f"/ws/{channel_name}") as again:
            await eventually(lambda: hub.subscriber_count(f"room:{channel_name}") == 1)
            await hub.publish(f"room:{channel_name}", "after")
            assert (await receive(again, within=5)).json() == "after"


async def test_a_publish_failing_inside_a_websocket_closes_it_with_1013(
    make_project: ProjectFactory,
    redis_proxy: TcpProxy,
    channel_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    root = live_project(make_project, redis_hub_yaml(redis_proxy.port))
    async with live_client(root) as client:
        hub = broadcast(client.app)
        async with client.ws_connect(f"/ws/{channel_name}") as ws:
            await eventually(lambda: hub.subscriber_count(f"room:{channel_name}") == 1)
            await redis_proxy.stop()
            await ws.send_json("lost?")  # the handler publishes it: Redis is gone
            closing = await closing_message(ws, within=5)
            assert closing.type is WSMsgType.CLOSE
            assert closing.data == WSCloseCode.TRY_AGAIN_LATER
            assert closing.extra == "try again later"
        # Raised after the block, once the socket is closed: no page follows it either.
        async with client.ws_connect(f"/publishes-after/{channel_name}") as ws:
            await ws.send_str("done")
            closing = await closing_message(ws, within=5)
            assert (closing.type, closing.data) == (WSMsgType.CLOSE, WSCloseCode.OK)
        await eventually(lambda: live_connections(client.app).total == 0)
    failures = [r for r in caplog.records if "broadcast hub is unavailable" in r.getMessage()]
    assert [r.levelno for r in failures] == [logging.WARNING, logging.WARNING]
    inside, after = (r.getMessage() for r in failures)
    assert f"(GET /ws/{channel_name}): " in inside
    assert inside.endswith("; closed the websocket with 1013")
    assert f"(GET /publishes-after/{channel_name}): " in after
    assert after.endswith("; its response had started, nothing more was sent")
    assert not any("answered 503" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.exc_info]
    access = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert len(access) == 2
    assert all('" 101 ' in line for line in access)


# -- the site stopping ------------------------------------------------------------------


async def test_stopping_the_site_closes_every_socket_with_1001(
    make_project: ProjectFactory, caplog: pytest.LogCaptureFixture
) -> None:
    root = live_project(make_project)
    async with aiohttp.ClientSession() as session:
        server = SiteServer(load_site(root, "test"))
        await server.start_server()
        sockets = [
            await session.ws_connect(server.make_url("/ws/lobby")),
            await session.ws_connect(server.make_url("/echo")),
        ]
        await eventually(lambda: live_connections(server.app).websockets == 2)
        started = time.monotonic()
        stopping = asyncio.create_task(server.close())  # runner.cleanup()
        for ws in sockets:
            closing = await closing_message(ws)
            assert closing.type is WSMsgType.CLOSE
            assert closing.data == WSCloseCode.GOING_AWAY
            assert closing.extra == "server shutdown"
            await ws.close()
        await stopping
        # The handlers end by themselves, well within the grace the shutdown gives them.
        assert time.monotonic() - started < SHUTDOWN_GRACE + 3
        assert "still open" not in caplog.text  # not cut off when the grace ran out
        assert live_connections(server.app).total == 0


@pytest.mark.e2e
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_aiosite_run_closes_sockets_with_1001_on_a_signal(
    make_project: ProjectFactory,
    start: Callable[..., Server],  # noqa: F811
    sig: signal.Signals,
) -> None:
    server = start(live_project(make_project), "--no-reload")
    await asyncio.to_thread(server.wait_ready)
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{server.port}"
        async with (
            session.ws_connect(f"{url}/ws/lobby") as first,
            session.ws_connect(f"{url}/echo") as second,
        ):
            await first.send_json("ready?")
            assert (await receive(first, within=10)).json() == "ready?"
            started = time.monotonic()
            os.killpg(server.proc.pid, sig)
            for ws in (first, second):
                closing = await closing_message(ws, within=10)
                assert closing.type is WSMsgType.CLOSE
                assert closing.data == WSCloseCode.GOING_AWAY
            assert await asyncio.to_thread(server.proc.wait, 15) == 0
            assert time.monotonic() - started < 5
    output = server.stderr() + server.stdout()
    assert "Traceback" not in output
    assert "still open" not in output
