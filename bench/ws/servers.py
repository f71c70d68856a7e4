"""The two servers under test, their backends, and starting and stopping them.

Each server is one process on 127.0.0.1 started from bench/ with bench/.venv's python;
a cross-process run starts two of the same on one backend. Every run gets a channel
of its own on the shared Redis (in a database number of its own) and a PostgreSQL
database of its own, created for the run and dropped after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from tfb.database import MAINTENANCE_DBS
from tfb.servers import BENCH, BENCH_PYTHON, StartError, free_port, stop_process

NAMES = ("aiosite", "aiohttp-peer")
BASELINE = "aiohttp-peer"
BACKENDS = ("memory", "redis", "postgres")
READY_TIMEOUT = 60.0
# The shared Redis: tests use databases 11-14; the benchmark's keys go to 15.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
DEFAULT_POSTGRES_SERVER = "postgresql://root@127.0.0.1:5432"
# The aiosite hub keeps a channel's history in the stream "aiosite:channels:<channel>".
AIOSITE_REDIS_PREFIX = "aiosite:channels:"


@dataclass(frozen=True)
class Backend:
    """Where messages travel between processes: ``url`` None for memory."""

    name: str
    url: str | None
    channel: str


def argv(name: str, python: str | os.PathLike[str], port: int, backend: Backend) -> list[str]:
    if name == "aiosite":
        return [
            str(python),
            *("-m", "aiosite", "--project", "ws/aiosite_site", "run", "--no-reload"),
            *("--host", "127.0.0.1", "--port", str(port)),
        ]
    args = [str(python), "-m", "ws.peer", "--port", str(port), "--backend", backend.name]
    if backend.url:
        args += ["--url", backend.url]
    return [*args, "--channel", backend.channel]


def environment(name: str, backend: Backend) -> dict[str, str]:
    # AIOSITE_* from the caller's shell must not leak into a server.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOSITE_")}
    env.setdefault("PYTHONUNBUFFERED", "1")
    if name == "aiosite":
        env["AIOSITE_ENV"] = "production"
        # A production site refuses to start without a secret key of its own.
        env["AIOSITE_SECURITY__SECRET_KEY"] = secrets.token_urlsafe(50)
        env["AIOSITE_CHANNELS__BACKEND"] = backend.name
        if backend.url:
            env["AIOSITE_CHANNELS__URL"] = backend.url
        env["AIOSITE_LIVE__CHANNEL"] = backend.channel
    return env


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: IO[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def output_tail(self, lines: int = 30) -> str:
        self.log.flush()
        text = Path(self.log.name).read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Group:
    """The processes of one implementation on one backend; the first takes the publisher."""

    name: str
    backend: Backend
    servers: list[Server] = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        return [s.pid for s in self.servers]

    def subscribe_urls(self) -> list[str]:
        return [s.url("/subscribe", "ws") for s in self.servers]

    def stats_urls(self) -> list[str]:
        return [s.url("/stats") for s in self.servers]

    def publish_url(self) -> str:
        return self.servers[0].url("/publish", "ws")

    def subscribers(self) -> int:
        return sum(int(fetch_json(url)["subscribers"]) for url in self.stats_urls())


def fetch_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (127.0.0.1)
        data: dict[str, Any] = json.loads(response.read())
        return data


def start(
    name: str,
    backend: Backend,
    *,
    python: str | os.PathLike[str] = BENCH_PYTHON,
    cpu: str | None = None,
) -> Server:
    """Start one server on a free port (pinned to ``cpu``) and wait until it answers."""
    port = free_port()
    command = argv(name, python, port, backend)
    if cpu is not None:
        command = ["taskset", "-c", cpu, *command]
    log = tempfile.NamedTemporaryFile(prefix=f"ws-{name}-", suffix=".log")  # noqa: SIM115
    proc = subprocess.Popen(
        command,
        cwd=BENCH,
        env=environment(name, backend),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = Server(name, port, proc, log)
    try:
        wait_ready(server)
    except BaseException:
        stop(server)
        raise
    return server


def wait_ready(server: Server, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        code = server.proc.poll()
        if code is not None:
            raise StartError(f"{server.name} exited with {code}:\n{server.output_tail()}")
        if time.monotonic() > deadline:
            raise StartError(f"{server.name} did not answer in {timeout:.0f} s")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(server.url("/ready"), timeout=5),  # noqa: S310
        ):
            return
        time.sleep(0.1)


def stop(server: Server) -> None:
    stop_process(server.proc)
    server.log.close()


@contextlib.contextmanager
def group(
    name: str,
    backend: Backend,
    processes: int,
    *,
    python: str | os.PathLike[str] = BENCH_PYTHON,
    cpu: str | None = None,
) -> Iterator[Group]:
    running = Group(name, backend)
    try:
        for _ in range(processes):
            running.servers.append(start(name, backend, python=python, cpu=cpu))
        yield running
    finally:
        for server in running.servers:
            stop(server)


def wait_empty(running: Group, timeout: float = 30.0) -> None:
    """Until the servers have let go of every subscriber of the last run."""
    deadline = time.monotonic() + timeout
    while running.subscribers():
        if time.monotonic() > deadline:
            raise StartError(f"{running.name} still counts subscribers after {timeout:g} s")
        time.sleep(0.05)


# --- the backends ------------------------------------------------------------------


def redis_url() -> str:
    return os.environ.get("WS_REDIS_URL", DEFAULT_REDIS_URL)


def postgres_server() -> str:
    return os.environ.get("WS_POSTGRES_URL", DEFAULT_POSTGRES_SERVER).rstrip("/")


@contextlib.contextmanager
def backends(names: Sequence[str]) -> Iterator[dict[str, Backend]]:
    """The backends asked for, each with a fresh channel; the PostgreSQL database is
    created here and dropped, with the Redis streams aiosite kept, at the end."""
    tag = secrets.token_hex(4)
    channel = f"wsbench_{tag}"
    found: dict[str, Backend] = {}
    database = f"ws_bench_{tag}"
    created = False
    try:
        for name in names:
            if name == "memory":
                found[name] = Backend(name, None, channel)
            elif name == "redis":
                found[name] = Backend(name, redis_url(), channel)
            elif name == "postgres":
                asyncio.run(_postgres(f"CREATE DATABASE {database}"))
                created = True
                found[name] = Backend(name, f"{postgres_server()}/{database}", channel)
        yield found
    finally:
        if created:
            asyncio.run(_postgres(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        if "redis" in found:
            asyncio.run(_forget_redis(found["redis"]))


async def _postgres(statement: str) -> None:
    # CREATE/DROP DATABASE run from a database that exists on a fresh server.
    parts = urlsplit(postgres_server())
    last: Exception | None = None
    for maintenance in MAINTENANCE_DBS:
        try:
            conn = await asyncpg.connect(urlunsplit(parts._replace(path="/" + maintenance)))
        except (OSError, asyncpg.PostgresError) as exc:
            last = exc
            continue
        try:
            await conn.execute(statement)
        finally:
            await conn.close()
        return
    raise RuntimeError(f"cannot reach PostgreSQL at {postgres_server()}") from last


async def _forget_redis(backend: Backend) -> None:
    import redis.asyncio as redis

    assert backend.url is not None
    client = redis.Redis.from_url(backend.url)
    try:
        await client.delete(AIOSITE_REDIS_PREFIX + backend.channel)
    finally:
        await client.aclose()
