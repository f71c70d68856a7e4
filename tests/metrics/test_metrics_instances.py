"""Two ``aiosite serve`` of one project on one host (blue/green): each master keeps its
workers' metrics in a directory of its own, so that starting one does not wipe the
other's counts and a scrape of either reports only its own requests."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import free_port, wait_for
from tests.support.projects import write_served_project

pytestmark = pytest.mark.e2e

AIOSITE = str(Path(sys.executable).parent / "aiosite")

ROUTES = """\
from aiohttp import web

from aiosite import Routes

routes = Routes()


@routes.get("/hello", name="hello")
async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")
"""


def write_project(root: Path) -> Path:
    return write_served_project(root, "instancesite", ROUTES)


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def up(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"aiosite serve exited:\n{self.output()}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


@contextmanager
def serve(project: Path, name: str, env: dict[str, str]) -> Iterator[Server]:
    port = free_port()
    log = project.parent / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [AIOSITE, "serve", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
            cwd=project,
            stdout=out,
            stderr=out,
            env=env,
            start_new_session=True,
        )
    server = Server(proc, port, log)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIOSITE_", "PROMETHEUS_"))}
    env.update(
        AIOSITE_SECURITY__SECRET_KEY=secrets.token_urlsafe(50),
        AIOSITE_SECURITY__ALLOWED_HOSTS=json.dumps(["127.0.0.1"]),
        AIOSITE_STATIC__MANIFEST="false",
        AIOSITE_DATABASE__URL=f"sqlite+aiosqlite:///{tmp_path}/db.sqlite3",
    )
    return env


def hellos(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "aiosite_requests_total" and sample.labels == {
                "route": "home:hello",
                "method": "GET",
                "status": "200",
            }:
                return sample.value
    return 0.0


async def send(server: Server, count: int) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            async with session.get(f"http://127.0.0.1:{server.port}/hello") as response:
                assert response.status == 200


async def counted(server: Server, expected: float) -> float:
    """The server's count of /hello once it is ``expected`` (its worker writes its files
    about once a second), or what it is after a few seconds."""
    deadline = time.monotonic() + 5
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(f"http://127.0.0.1:{server.port}/metrics") as response:
                assert response.status == 200
                found = hellos(await response.text())
            if found == expected or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.2)


async def test_two_servers_of_one_project_count_apart(
    tmp_path: Path, environment: dict[str, str]
) -> None:
    project = write_project(tmp_path / "site")
    root = project / "var" / "prometheus"
    with ExitStack() as stack:
        blue = stack.enter_context(serve(project, "blue", environment))
        await asyncio.to_thread(wait_for, blue.up, "the blue server", blue.output)
        await send(blue, 5)
        assert await counted(blue, 5) == 5
        assert (root / str(blue.proc.pid)).is_dir()

        green = stack.enter_context(serve(project, "green", environment))
        await asyncio.to_thread(wait_for, green.up, "the green server", green.output)
        await send(green, 3)
        # Starting green wiped none of blue's counts, and neither reports the other's.
        assert await counted(green, 3) == 3
        assert await counted(blue, 5) == 5
        assert {path.name for path in root.iterdir()} == {
            str(blue.proc.pid),
            str(green.proc.pid),
        }

        # A server that stops removes its directory; the other's stays.
        blue.stop()
        assert blue.proc.returncode == 0, blue.output()
        assert {path.name for path in root.iterdir()} == {str(green.proc.pid)}
        assert await counted(green, 3) == 3
