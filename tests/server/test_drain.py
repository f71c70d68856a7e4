"""A stopping server drains its connections, through raw sockets: what a proxy's pool of
idle keep-alive connections sees while the site behind it stops (``server.drain_timeout``).

Closed under it, a connection the proxy has just sent a request on fails that request,
and a proxy does not resend a POST. So while the server drains, every answer says
``Connection: close`` and closes its connection, idle connections stay open until the
proxy closes them (or the drain ends), and the site's own shutdown does not wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSCloseCode, WSMsgType, web

from aiosite import load_site
from aiosite.keys import SETTINGS
from aiosite.server.protocol import ConnectionLimits, GuardedAppRunner

ROUTES = """\
import asyncio

from aiohttp import web

from aiosite import Routes, csrf_exempt, open_websocket

routes = Routes()


@routes.get("/", name="index")
async def index(request: web.Request) -> web.Response:
    return web.Response(text="hello")


@routes.post("/write", name="write")
@csrf_exempt
async def write(request: web.Request) -> web.Response:
    return web.Response(text=f"written {len(await request.read())}")


@routes.get("/slow", name="slow")
async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("seconds", "1")))
    return web.Response(text="slow hello")


@routes.websocket("/ws", name="ws")
async def ws(request: web.Request) -> web.WebSocketResponse:
    async with open_websocket(request) as socket:
        async for msg in socket:
            pass
    return socket
"""

# Idle connections would otherwise be closed by the keep-alive timeout, not the drain.
LIMITS_YAML = """\
server:
  keepalive_timeout: 30
"""

GET = "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"
POST_WRITE = b"POST /write HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello"


@pytest.fixture
def project(make_project: Callable[..., Path]) -> Path:
    return make_project({"PKG/home/routes.py": ROUTES}, env_yaml={"production": LIMITS_YAML})


@contextlib.asynccontextmanager
async def serving(root: Path, drain: float) -> AsyncIterator[tuple[GuardedAppRunner, int]]:
    """The site served as a worker of ``aiosite serve`` serves it, draining ``drain``
    seconds, on a free port; the runner, to stop it (``cleanup()``) in the test."""
    app = load_site(root, "production")
    runner = GuardedAppRunner(
        app,
        limits=ConnectionLimits.from_settings(app[SETTINGS]),
        drain_timeout=drain,
        shutdown_timeout=10.0,
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port: int = runner.addresses[0][1]
    try:
        yield runner, port
    finally:
        await runner.cleanup()  # a no-op when the test stopped it


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One response (with a Content-Length body) off a kept-alive connection."""
    async with asyncio.timeout(5):
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        status_line, *lines = head.strip().split("\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, value in (line.split(":", 1) for line in lines)
        }
        body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split()[1]), headers, body


async def kept_alive(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection that has had one request answered and is now idle, as a proxy's
    pooled connection is."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(GET.format(path="/").encode())
    status, headers, _ = await read_response(reader)
    assert status == 200
    assert headers.get("connection", "").lower() != "close"
    return reader, writer


async def closed_by_server(reader: asyncio.StreamReader, within: float = 5.0) -> bool:
    """The server closed the connection (within ``within`` seconds), sending nothing."""
    async with asyncio.timeout(within):
        return await reader.read() == b""


async def until_handled(runner: GuardedAppRunner, count: int) -> None:
    """Until the server has started handling its ``count``-th request."""
    server = runner.server
    assert server is not None
    async with asyncio.timeout(5):
        while server.requests_count < count:  # noqa: ASYNC110 - aiohttp's counter
            await asyncio.sleep(0.01)


async def test_a_post_on_an_idle_connection_during_the_drain_is_answered_and_closes(
    project: Path,
) -> None:
    async with serving(project, drain=5.0) as (runner, port):
        reader, writer = await kept_alive(port)
        stopping = asyncio.create_task(runner.cleanup())
        await asyncio.sleep(0.3)
        assert not stopping.done()  # the idle connection holds the drain open
        # What a proxy may do with a pooled connection at any moment: send on it.
        writer.write(POST_WRITE)
        status, headers, body = await read_response(reader)
        assert (status, body) == (200, b"written 5")
        assert headers["connection"].lower() == "close"
        assert await closed_by_server(reader)
        writer.close()
        started = time.monotonic()
        # The last connection gone, the drain ends at once.
        await asyncio.wait_for(stopping, 2)
        assert time.monotonic() - started < 1.0


async def test_a_response_finished_during_the_shutdown_says_connection_close(
    project: Path,
) -> None:
    async with serving(project, drain=5.0) as (runner, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(GET.format(path="/slow?seconds=0.8").encode())
        await until_handled(runner, 1)
        stopping = asyncio.create_task(runner.cleanup())
        status, headers, body = await read_response(reader)
        assert (status, body) == (200, b"slow hello")
        assert headers["connection"].lower() == "close"
        assert await closed_by_server(reader)
        writer.close()
        await asyncio.wait_for(stopping, 2)


async def test_idle_connections_are_closed_when_the_drain_runs_out(project: Path) -> None:
    async with serving(project, drain=0.5) as (runner, port):
        idle = [await kept_alive(port) for _ in range(3)]
        started = time.monotonic()
        stopping = asyncio.create_task(runner.cleanup())
        for reader, writer in idle:
            assert await closed_by_server(reader)
            writer.close()
        closed_after = time.monotonic() - started
        await asyncio.wait_for(stopping, 3)
        stopped_after = time.monotonic() - started
    assert 0.4 < closed_after < 1.5, closed_after
    assert stopped_after < 2.0, stopped_after


async def test_without_open_connections_the_shutdown_does_not_wait_for_the_drain(
    project: Path,
) -> None:
    async with serving(project, drain=5.0) as (runner, port):
        _, writer = await kept_alive(port)
        writer.close()  # a client that closed its connection itself
        await writer.wait_closed()
        started = time.monotonic()
        await asyncio.wait_for(runner.cleanup(), 3)
    assert time.monotonic() - started < 1.0


async def test_new_connections_are_refused_once_the_shutdown_started(project: Path) -> None:
    async with serving(project, drain=5.0) as (runner, port):
        _, writer = await kept_alive(port)
        stopping = asyncio.create_task(runner.cleanup())
        await asyncio.sleep(0.3)
        assert not stopping.done()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        await asyncio.wait_for(stopping, 2)


async def test_websockets_get_1001_at_the_start_of_the_shutdown_not_after_the_drain(
    project: Path,
) -> None:
    async with (
        serving(project, drain=5.0) as (runner, port),
        aiohttp.ClientSession() as session,
    ):
        _, writer = await kept_alive(port)  # holds the drain open
        async with session.ws_connect(f"http://127.0.0.1:{port}/ws") as ws:
            started = time.monotonic()
            stopping = asyncio.create_task(runner.cleanup())
            async with asyncio.timeout(3):
                closing = await ws.receive()
            assert closing.type is WSMsgType.CLOSE
            assert closing.data == WSCloseCode.GOING_AWAY
            assert time.monotonic() - started < 1.5
        assert not stopping.done()  # still draining the idle connection
        writer.close()
        await asyncio.wait_for(stopping, 3)


async def test_a_connection_waiting_to_be_accepted_when_the_shutdown_starts_is_answered(
    project: Path,
) -> None:
    """The kernel completes a connection (and takes its request) before the server
    accepts it; closing the listening socket would reset it, and the request, which a
    proxy would not resend if it was a POST, would be lost."""
    async with serving(project, drain=5.0) as (runner, port):
        # Connected and sent without the event loop running: nothing accepted it yet.
        waiting = socket.create_connection(("127.0.0.1", port))
        waiting.sendall(POST_WRITE)
        stopping = asyncio.create_task(runner.cleanup())
        waiting.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=waiting)
        status, headers, body = await read_response(reader)
        assert (status, body) == (200, b"written 5")
        assert headers["connection"].lower() == "close"
        assert await closed_by_server(reader)
        writer.close()
        await asyncio.wait_for(stopping, 2)
