"""The event-loop block detector, through HTTP requests to a real project."""

from __future__ import annotations

import asyncio
import http.server
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from aiosite import load_site
from aiosite.debug.blocking import BLOCK_DETECTOR, BlockDetector, BlockEvent

ROUTES = """\
import asyncio
import gc
import time
import urllib.request

from aiohttp import web

from aiosite import Routes

routes = Routes()


@routes.get("/slow", name="slow")
async def slow(request: web.Request) -> web.Response:
    time.sleep(0.3)
    return web.Response(text="slow")


@routes.get("/nap", name="nap")
async def nap(request: web.Request) -> web.Response:
    await asyncio.sleep(0.3)
    return web.Response(text="nap")


@routes.get("/fetch", name="fetch")
async def fetch(request: web.Request) -> web.Response:
    with urllib.request.urlopen(request.query["url"]) as upstream:
        return web.Response(body=upstream.read())


@routes.get("/later", name="later")
async def later(request: web.Request) -> web.Response:
    asyncio.get_running_loop().call_soon(time.sleep, 0.3)
    return web.Response(text="scheduled")


@routes.get("/crunch", name="crunch")
async def crunch(request: web.Request) -> web.Response:
    total = sum(range(int(request.query["n"])))  # C code that never lets go of the GIL
    return web.Response(text=str(total))


@routes.get("/collect", name="collect")
async def collect(request: web.Request) -> web.Response:
    started = time.perf_counter()
    gc.collect()
    return web.Response(text=str(time.perf_counter() - started))


@routes.get("/short", name="short")
async def short(request: web.Request) -> web.Response:
    time.sleep(0.15)
    return web.Response(text="short")
"""

DETECT = "debug:\n  detect_blocking: true\n"
THREAD_NAME = "aiosite-block-detector"


def project(make_project, **env_yaml: str) -> Path:
    root: Path = make_project({"PKG/home/routes.py": ROUTES}, env_yaml={"test": DETECT, **env_yaml})
    return root


def line_of(root: Path, text: str) -> int:
    source = next(root.glob("*/home/routes.py")).read_text().splitlines()
    return next(n for n, line in enumerate(source, 1) if text in line)


def detector_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


async def wait_for_events(detector: BlockDetector, count: int = 1) -> list[BlockEvent]:
    for _ in range(1000):  # up to ~10 s
        if len(detector.events) >= count:
            break
        await asyncio.sleep(0.01)
    return detector.events


@pytest.fixture
def slow_upstream() -> Iterator[str]:
    """A plain HTTP server in a thread that takes 0.3 s to answer."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(0.3)
            body = b"upstream"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def test_time_sleep_in_handler_is_reported_with_route_and_line(make_project) -> None:
    root = project(make_project)
    site = load_site(root, "test")
    detector = site[BLOCK_DETECTOR]
    async with TestClient(TestServer(site)) as client:
        assert detector.running
        assert len(detector_threads()) == 1
        resp = await client.get("/slow")
        assert resp.status == 200
        events = await wait_for_events(detector)
    assert len(events) == 1, events  # one event for the whole block, not one per beat
    event = events[0]
    assert event.route == "home:slow"
    assert event.where is not None
    package = next(root.glob("*/home")).parent.name
    assert event.where.display == f"{package}/home/routes.py"
    assert event.where.lineno == line_of(root, "time.sleep(0.3)")
    assert event.where.function == "slow"
    assert event.where.line == "time.sleep(0.3)"
    assert 290 <= event.duration_ms < 2000
    assert not detector.running
    assert detector_threads() == []


async def test_awaiting_asyncio_sleep_is_not_reported(make_project) -> None:
    site = load_site(project(make_project), "test")
    detector = site[BLOCK_DETECTOR]
    async with TestClient(TestServer(site)) as client:
        resp = await client.get("/nap")
        assert resp.status == 200
        # The same detector does see a real block afterwards.
        resp = await client.get("/slow")
        assert resp.status == 200
        events = await wait_for_events(detector)
    assert [e.route for e in events if e.route in {"home:nap", "home:slow"}] == ["home:slow"]


async def test_synchronous_http_request_is_reported(make_project, slow_upstream: str) -> None:
    site = load_site(project(make_project), "test")
    detector = site[BLOCK_DETECTOR]
    async with TestClient(TestServer(site)) as client:
        resp = await client.get("/fetch", params={"url": slow_upstream})
        assert resp.status == 200
        assert await resp.text() == "upstream"
        events = await wait_for_events(detector)
    event = next(e for e in events if e.route == "home:fetch")
    assert event.where is not None
    assert event.where.function == "fetch"
    assert "urllib.request.urlopen" in event.where.line
    # The innermost frame is inside the stdlib, where the socket read waits.
    assert event.innermost is not None
    assert event.innermost != event.where
    assert "(innermost: " in event.describe()


async def test_block_outside_a_request(make_project) -> None:
    site = load_site(project(make_project), "test")
    detector = site[BLOCK_DETECTOR]
    async with TestClient(TestServer(site)) as client:
        resp = await client.get("/later")
        assert resp.status == 200
        events = await wait_for_events(detector)
    event = events[0]
    assert event.route is None
    # The frames around the loop (pytest, asyncio.run) are never blamed.
    assert event.where is None
    assert "outside a request" in event.describe()


async def test_threshold_setting_is_respected(make_project) -> None:
    test_yaml = "debug:\n  detect_blocking: true\n  block_threshold_ms: 1000\n"
    site = load_site(project(make_project, test=test_yaml), "test")
    detector = site[BLOCK_DETECTOR]
    assert detector.threshold_ms == 1000
    async with TestClient(TestServer(site)) as client:
        resp = await client.get("/short")
        assert resp.status == 200
        # Give a (wrong) report the time to appear.
        await asyncio.sleep(0.2)
    assert [e for e in detector.events if e.route == "home:short"] == []


async def test_nothing_is_started_when_detection_is_off(
    make_project, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_project({"PKG/home/routes.py": ROUTES})  # test.yaml: detection off
    site = load_site(root, "test")
    assert BLOCK_DETECTOR not in site
    names = [getattr(m, "__name__", "") for m in site.middlewares]
    assert "aiosite_block_detector" not in names
    with caplog.at_level(logging.WARNING, logger="aiosite.debug"):
        async with TestClient(TestServer(site)) as client:
            assert detector_threads() == []
            resp = await client.get("/slow")
            assert resp.status == 200
            await asyncio.sleep(0.05)
    assert [r for r in caplog.records if r.name == "aiosite.debug"] == []


async def test_development_logs_each_block_as_a_warning(
    make_project, caplog: pytest.LogCaptureFixture
) -> None:
    development = "debug:\n  enabled: true\n  toolbar: false\n  detect_blocking: true\n"
    root = project(make_project, development=development)
    site = load_site(root, "development")
    detector = site[BLOCK_DETECTOR]
    with caplog.at_level(logging.WARNING, logger="aiosite.debug"):
        async with TestClient(TestServer(site)) as client:
            resp = await client.get("/slow")
            assert resp.status == 200
            await wait_for_events(detector)
    messages = [
        r.getMessage()
        for r in caplog.records
        if r.name == "aiosite.debug" and r.levelno == logging.WARNING
    ]
    package = next(root.glob("*/home")).parent.name
    line = line_of(root, "time.sleep(0.3)")
    pattern = (
        rf"event loop blocked for \d+ ms in route 'home:slow' at "
        rf"{package}/home/routes\.py:{line} in slow: time\.sleep\(0\.3\)"
    )
    assert any(re.fullmatch(pattern, m) for m in messages), messages


async def test_block_in_c_code_holding_the_gil_is_reported(make_project) -> None:
    per_million = float("inf")
    for _ in range(3):  # the fastest of three: the block takes at least what we aim at
        start = time.thread_time()
        sum(range(1_000_000))
        per_million = min(per_million, time.thread_time() - start)
    n = int(1_000_000 * 0.5 / max(per_million, 1e-4))  # about 0.5 s of CPU
    site = load_site(project(make_project), "test")
    detector = site[BLOCK_DETECTOR]
    async with TestClient(TestServer(site)) as client:
        resp = await client.get("/crunch", params={"n": str(n)})
        assert resp.status == 200
        events = await wait_for_events(detector)
    # Either the watchdog caught the handler as the GIL came free, or the heartbeat saw
    # the loop thread busy on the CPU for the whole gap: one event either way.
    assert len(events) == 1, events
    # The block's length follows the machine's speed, not the calibration; it only has
    # to be past the threshold to be a block.
    assert events[0].duration_ms >= detector.threshold_ms
    assert events[0].route in {None, "home:crunch"}


async def test_garbage_collection_is_not_blamed_on_the_project(make_project) -> None:
    # A large heap makes a full collection take longer than the threshold; such a pause
    # stalls the loop wherever it happens to be, so no project line is to blame.
    heap = [[index] for index in range(3_000_000)]
    root = project(make_project)
    async with TestClient(TestServer(load_site(root, "test"))) as client:
        detector = client.app[BLOCK_DETECTOR]
        resp = await client.get("/collect")
        took = float(await resp.text())
        await asyncio.sleep(0.2)  # a heartbeat after the pause
        slow = await client.get("/slow")  # the detector still sees real blocks
        assert slow.status == 200
        events = await wait_for_events(detector)
    del heap
    assert took * 1000 > detector.threshold_ms, "the heap was too small to test anything"
    assert [event.route for event in events] == ["home:slow"], events


def test_a_stopped_loop_is_not_blocked() -> None:
    """Between run_until_complete calls (as in pytest-asyncio) the loop is not blocked."""
    loop = asyncio.new_event_loop()
    detector = BlockDetector(50, log=False)

    async def begin() -> None:
        detector.start()

    try:
        loop.run_until_complete(begin())
        loop.run_until_complete(asyncio.sleep(0.05))
        end = time.monotonic() + 0.3
        while time.monotonic() < end:  # busy, but the loop is not running: no block
            pass
        loop.run_until_complete(asyncio.sleep(0.05))
        loop.call_soon(time.sleep, 0.2)  # while this blocks, it is running
        loop.run_until_complete(asyncio.sleep(0.05))
    finally:
        detector.stop()
        loop.close()
    # One event, for the 0.2 s sleep alone (a loaded machine may stretch it, never shrink it).
    assert len(detector.events) == 1, detector.events
    assert 190 <= detector.events[0].duration_ms < 1000


CHILD = """
import asyncio
from aiosite.debug.blocking import BlockDetector

async def main():
    detector = BlockDetector(100, log=False)
    detector.start()
    print("ready", flush=True)
    await asyncio.sleep(1.5)
    detector.stop()
    print("events", len(detector.events), flush=True)

asyncio.run(main())
"""


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="POSIX signals")
def test_a_suspended_process_is_not_a_block() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        os.kill(child.pid, signal.SIGSTOP)
        time.sleep(0.4)  # the suspension being tested, not a wait for something
        os.kill(child.pid, signal.SIGCONT)
        out, _ = child.communicate(timeout=30)
    finally:
        child.kill()
        child.wait()
    assert out.strip() == "events 0"
