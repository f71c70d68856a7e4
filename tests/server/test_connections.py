"""Slow, idle and hostile clients against the server aiosite serves sites with, through
raw sockets: each is cut off within its bound, and the log stays quiet."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web

from aiosite import load_site
from aiosite.keys import SETTINGS
from aiosite.server.protocol import ConnectionLimits, GuardedAppRunner

FORM_ROUTES = """\
from aiohttp import web

from aiosite import Routes, csrf_exempt, json_response, max_body_size

routes = Routes()


@routes.get("/", name="index")
async def index(request: web.Request) -> web.Response:
    return web.Response(text="hello")


@routes.post("/form", name="form")
@csrf_exempt
async def form(request: web.Request) -> web.Response:
    data = await request.post()
    return json_response({"fields": len(data), "bytes": len(str(data.get("text", "")))})


@routes.post("/big", name="big")
@csrf_exempt
@max_body_size(3 * 1024 * 1024)
async def big(request: web.Request) -> web.Response:
    body = await request.read()
    return json_response({"bytes": len(body)})


@routes.post("/small", name="small")
@csrf_exempt
@max_body_size(100)
async def small(request: web.Request) -> web.Response:
    return json_response({"bytes": len(await request.read())})
"""

# Tight bounds so that the tests take a second or two each.
LIMITS_YAML = """\
server:
  head_timeout: {head_timeout}
  body_timeout: 0.6
  body_min_rate: 1000
  keepalive_timeout: {keepalive_timeout}
  max_connections: 3
"""


def limited_project(make_project: Callable[..., Path], head_timeout: float = 0.6) -> Path:
    # aiohttp closes a connection idle for keepalive_timeout, a new one included.
    limits = LIMITS_YAML.format(
        head_timeout=head_timeout, keepalive_timeout=max(0.8, head_timeout + 1)
    )
    return make_project({"PKG/home/routes.py": FORM_ROUTES}, env_yaml={"production": limits})


@pytest.fixture
def project(make_project: Callable[..., Path]) -> Path:
    return limited_project(make_project)


@contextlib.asynccontextmanager
async def serving(root: Path, env: str = "production") -> AsyncIterator[int]:
    """The site served as ``aiosite run`` serves it, on a free port."""
    app = load_site(root, env)
    runner = GuardedAppRunner(app, limits=ConnectionLimits.from_settings(app[SETTINGS]))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port: int = runner.addresses[0][1]
    try:
        yield port
    finally:
        await runner.cleanup()


async def read_until_closed(reader: asyncio.StreamReader, limit: float = 5.0) -> bytes:
    """Everything the server sends until it closes the connection (or ``limit`` passes:
    then the test fails on what it got)."""
    return await asyncio.wait_for(reader.read(), timeout=limit)


HEAD = (
    "POST /form HTTP/1.1\r\nHost: localhost\r\n"
    "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {length}\r\n\r\n"
)


async def test_a_client_that_sends_nothing_is_closed(project: Path) -> None:
    async with serving(project) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        data = await read_until_closed(reader)
        elapsed = time.monotonic() - started
        writer.close()
    assert data == b""  # no request, nothing to answer
    assert 0.5 < elapsed < 2.5


async def trickled(
    port: int, first: bytes, pieces: list[bytes], pause: float
) -> tuple[bytes, float]:
    """Send ``first``, then ``pieces`` one at a time ``pause`` apart, until the server
    closes the connection: what it sent back, and after how many seconds."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(first)
    started = time.monotonic()

    async def trickle() -> None:
        with contextlib.suppress(ConnectionError):
            for piece in pieces:
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(pause)

    sender = asyncio.create_task(trickle())
    data = await read_until_closed(reader)
    elapsed = time.monotonic() - started
    sender.cancel()
    writer.close()
    return data, elapsed


async def test_headers_sent_a_line_a_time_get_408(project: Path) -> None:
    lines = [b"Host: localhost\r\n"] + [b"X-Slow: 1\r\n"] * 40
    async with serving(project) as port:
        data, elapsed = await trickled(port, b"GET / HTTP/1.1\r\n", lines, 0.2)
    assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"Server: aiosite\r\n" in data
    assert 0.5 < elapsed < 2.5


async def test_a_body_trickled_slowly_gets_the_408_page(project: Path) -> None:
    body = b"text=" + b"x" * 995
    head = HEAD.format(length=len(body)).encode()
    async with serving(project) as port:
        data, elapsed = await trickled(port, head, [bytes([byte]) for byte in body], 0.05)
    assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"arrived too slowly" in data  # the site's 408 page, and then the close
    assert 0.5 < elapsed < 3.0


async def test_a_body_at_a_fair_rate_is_read_whole(project: Path) -> None:
    # 6 KB over about 1.5 s: longer than body_timeout, four times body_min_rate.
    body = b"text=" + b"y" * 5995
    async with serving(project) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HEAD.format(length=len(body)).encode())
        for start in range(0, len(body), 1000):
            writer.write(body[start : start + 1000])
            await writer.drain()
            await asyncio.sleep(0.25)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
        payload = await asyncio.wait_for(reader.read(200), timeout=5)
        writer.close()
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b'"bytes":5995' in payload


async def test_an_idle_keep_alive_connection_is_closed(project: Path) -> None:
    async with serving(project) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Server: aiosite\r\n" in head
        assert await reader.readexactly(5) == b"hello"
        started = time.monotonic()
        rest = await read_until_closed(reader)
        elapsed = time.monotonic() - started
        writer.close()
    assert rest == b""
    assert 0.6 < elapsed < 2.5


async def fetch_index(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    answer = await read_until_closed(reader)
    writer.close()
    return answer


async def test_connections_over_the_limit_get_503(make_project: Callable[..., Path]) -> None:
    # Connections held open without a request must outlive the test's steps.
    project = limited_project(make_project, head_timeout=30)
    async with serving(project) as port:
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        refused = await fetch_index(port)
        for _, other in held:
            other.close()
        # Once the others are gone, the process takes connections again.
        deadline = time.monotonic() + 5
        answer = await fetch_index(port)
        while not answer.startswith(b"HTTP/1.1 200") and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            answer = await fetch_index(port)
    assert refused.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"too many connections" in refused
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")


async def test_a_first_request_is_timed_from_the_connection_opening(
    make_project: Callable[..., Path],
) -> None:
    # Waiting until just before the deadline and then sending a byte buys no more time.
    project = limited_project(make_project, head_timeout=2)
    async with serving(project) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        opened = time.monotonic()
        await asyncio.sleep(1.7)
        writer.write(b"G")
        data = await read_until_closed(reader, limit=10)
        elapsed = time.monotonic() - opened
        writer.close()
    assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert elapsed < 3.4  # timed from the first byte it would be 3.7 or more


@pytest.mark.parametrize(
    ("path", "length", "status"),
    [
        ("/form", 10 * 1024**3, 413),  # over server.client_max_size, no upload limits
        ("/small", 101, 413),  # over the route's own, smaller limit
        ("/big", 10 * 1024**3, 413),  # over the route's larger one
        ("/nowhere", 10 * 1024**3, 413),  # refused before routing matters
    ],
)
async def test_a_declared_huge_body_is_refused_before_it_is_read(
    project: Path, path: str, length: int, status: int
) -> None:
    async with serving(project) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {length}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        await writer.drain()
        # Without a body to wait for, a 408 (body_timeout) would be the answer.
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
        writer.close()
    assert head.startswith(f"HTTP/1.1 {status} ".encode())


async def test_a_body_sent_after_an_early_answer_is_no_new_request(project: Path) -> None:
    # The body keeps coming after the 413, slowly, for longer than head_timeout: the
    # server reads it away and answers nothing more.
    async with serving(project) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /form HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2000000\r\n\r\n")
        for _ in range(15):
            writer.write(b"x" * 10)
            await writer.drain()
            await asyncio.sleep(0.1)
        writer.write_eof()
        data = await read_until_closed(reader, limit=15)
        writer.close()
    assert data.startswith(b"HTTP/1.1 413 ")
    assert data.count(b"HTTP/1.1 ") == 1


async def test_a_chunked_body_follows_the_route_limit(project: Path) -> None:
    # No declared length: the route's limit (3 MiB), not the site's (1 MiB), bounds it.
    chunk = b"z" * (512 * 1024)
    async with serving(project) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /big HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n"
        )
        for _ in range(4):
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        answer = await read_until_closed(reader)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b'{"bytes":2097152}')


async def test_a_route_may_accept_a_body_larger_than_the_site_limit(project: Path) -> None:
    body = b"z" * (2 * 1024 * 1024)  # over server.client_max_size (1 MiB)
    async with serving(project) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"POST /big HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        writer.write(body)
        await writer.drain()
        answer = await read_until_closed(reader)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b'{"bytes":2097152}')


MALFORMED = [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n",
    b"GET / HTTP/9.9\r\nHost: localhost\r\n\r\n",
    b"POST /form HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length: -1\r\n\r\n",
    b"POST /form HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\n\r\nZZZ\r\nabc\r\n0\r\n\r\n",
]


async def test_malformed_requests_are_logged_briefly_without_tracebacks(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    statuses = []
    async with serving(project) as port:
        for number in range(50):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(MALFORMED[number % len(MALFORMED)])
            await writer.drain()
            answer = await read_until_closed(reader)
            writer.close()
            statuses.append(answer.split(b" ", 2)[1] if answer else b"closed")
    assert set(statuses) <= {b"400", b"408"}, statuses
    assert statuses.count(b"400") >= 40
    records = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert not [r for r in records if r.exc_info or r.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text
    # Throttled: a burst of lines, not one per request (two loggers: the protocol's
    # and the core's, for bodies broken after their headers).
    malformed = [r for r in records if "Malformed" in r.getMessage()]
    assert 1 <= len(malformed) <= 20


async def test_limits_come_from_the_settings(make_project: Callable[..., Path]) -> None:
    root = make_project(env_yaml={"test": "server:\n  head_timeout: 3\n  max_connections: 7\n"})
    app = load_site(root, "test")
    limits = ConnectionLimits.from_settings(app[SETTINGS])
    assert (limits.head_timeout, limits.max_connections, limits.body_timeout) == (3, 7, 10)
    assert limits.server_header == "aiosite"
