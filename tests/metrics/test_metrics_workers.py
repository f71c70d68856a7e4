"""Metrics under ``aiosite serve --workers 2``: one scrape of either worker reports the
requests of both (prometheus-client's multiprocess mode), and a dead worker's gauges
leave the sums while its counts stay."""

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
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import free_port, wait_for
from tests.support.projects import write_served_project

pytestmark = pytest.mark.e2e

AIOSITE = str(Path(sys.executable).parent / "aiosite")
REQUESTS = 300
# Batches sent at most until both workers have answered (the kernel spreads connections
# between them, but a loaded machine may let one worker accept a whole batch).
BATCHES = 10

ROUTES = """\
import os

from aiohttp import web

from aiosite import Routes

routes = Routes()


@routes.get("/pid", name="pid")
async def pid(request: web.Request) -> web.Response:
    return web.Response(text=str(os.getpid()))
"""


def write_project(root: Path) -> Path:
    return write_served_project(root, "metricsite", ROUTES)


def read(log: Path) -> Callable[[], str]:
    return lambda: log.read_text(errors="replace")


def workers_of(master: int) -> set[int]:
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text()
    except OSError:
        return set()
    return {int(pid) for pid in children.split()}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, int, Path]]:
    project = write_project(tmp_path / "site")
    port = free_port()
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIOSITE_", "PROMETHEUS_"))}
    env.update(
        AIOSITE_SECURITY__SECRET_KEY=secrets.token_urlsafe(50),
        AIOSITE_SECURITY__ALLOWED_HOSTS=json.dumps(["127.0.0.1"]),
        AIOSITE_STATIC__MANIFEST="false",
        AIOSITE_DATABASE__URL=f"sqlite+aiosqlite:///{tmp_path}/db.sqlite3",
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [AIOSITE, "serve", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
            cwd=project,
            stdout=out,
            stderr=out,
            env=env,
            start_new_session=True,
        )
    try:
        yield proc, project, port, log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def requests_total(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "aiosite_requests_total" and sample.labels == {
                "route": "home:pid",
                "method": "GET",
                "status": "200",
            }:
                return sample.value
    return 0.0


def gauge(text: str, name: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    return None


async def send(port: int, count: int) -> list[int]:
    """``count`` requests, 20 at a time, each on a connection of its own (so that both
    workers accept some); the pids that answered."""
    connector = aiohttp.TCPConnector(limit=20, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> int:
            async with session.get(f"http://127.0.0.1:{port}/pid") as response:
                assert response.status == 200
                return int(await response.text())

        return await asyncio.gather(*(one() for _ in range(count)))


async def scrape(port: int) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        assert response.status == 200
        return await response.text()


async def test_one_scrape_counts_the_requests_of_every_worker(
    served: tuple[subprocess.Popen[bytes], Path, int, Path],
) -> None:
    proc, project, port, log = served

    def up() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"aiosite serve exited:\n{log.read_text(errors='replace')}")
        if len(workers_of(proc.pid)) != 2:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    await asyncio.to_thread(wait_for, up, "two workers", read(log))
    workers = workers_of(proc.pid)
    pids: list[int] = []
    for _ in range(BATCHES):
        pids += await send(port, REQUESTS)
        if set(pids) == workers:
            break
    # Both workers answered: one scrape must count the requests of the other.
    assert set(pids) == workers, f"answered by {set(pids)}, workers {workers}"
    assert workers_of(proc.pid) == workers
    sent = len(pids)
    # Each worker's counts reach its files within a flush interval (1 s).
    deadline = time.monotonic() + 10
    text = await scrape(port)
    while requests_total(text) != sent and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        text = await scrape(port)
    assert requests_total(text) == sent
    # Gauges are summed over the live workers: two pools of 5.
    assert gauge(text, "aiosite_db_pool_size") == 10
    directory = project / "var" / "prometheus" / str(proc.pid)
    counted = {int(p.name.split("_")[1].split("-")[0]) for p in directory.glob("counter_*.db")}
    # Both workers wrote counts.
    assert workers <= counted
    print(f"answers per worker: { {pid: pids.count(pid) for pid in set(pids)} }")

    # A worker killed: its gauges leave the sums; its counts stay in the totals.
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)

    def replaced() -> bool:
        now = workers_of(proc.pid)
        return victim not in now and len(now) == 2

    await asyncio.to_thread(wait_for, replaced, "a new worker", read(log))
    await asyncio.to_thread(
        wait_for,
        lambda: not list(directory.glob(f"gauge_livesum_{victim}-*.db")),
        "the dead worker's gauges to go",
        read(log),
    )
    assert list(directory.glob(f"counter_{victim}-*.db"))
    text = await scrape(port)
    assert requests_total(text) == sent
