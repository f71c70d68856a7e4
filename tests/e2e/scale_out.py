"""The harness of test_scale_out.py: the example blog as a small cluster on one machine.

Two ``aiosite serve`` instances (gunicorn, two workers each) of a copy of examples/blog,
on PostgreSQL (a database of their own, reached through a TcpProxy the test can cut) and
Redis (sessions and the broadcast hub, keys of this run only), with nginx in front
(``aiosite deploy nginx``'s site file, run by tests/support/nginx.py) serving the
collected static files.

Everything asynchronous (the proxy, the writer that posts throughout, the clients of the
test's steps) runs on one event loop in a thread of its own (``LoopThread``), so that the
proxy forwards and the writer writes between test functions too, whatever pytest does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import asyncpg
import redis.asyncio as aioredis

from tests.conftest import POSTGRESQL_URL
from tests.db.proxy import TcpProxy
from tests.e2e.test_run import BIN, clean_env, free_port
from tests.support.nginx import RunningNginx, running_nginx

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "blog"
AIOSITE = str(BIN / "aiosite")
# The demo accounts' password (examples/blog/blogsite/blog/fixtures/demo.yaml).
PASSWORD = "aiosite-demo"  # noqa: S105 - the public demo accounts'
# A Redis database no other test module uses (channels 11, rate limits 12, sessions
# 13 and 14); this run's keys carry a prefix of its own and are deleted afterwards.
REDIS_DB = 15
# Processes of each ``aiosite serve``.
WORKERS = 2
# Seconds a process may take to start or stop on a loaded 2-core machine.
START_WITHIN = 60.0
STOP_WITHIN = 30.0
_ADMIN_URL = POSTGRESQL_URL.replace("+asyncpg", "")


class LoopThread:
    """An event loop running in a daemon thread; ``run(coro)`` waits for its result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 90.0) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            name = getattr(coro, "__qualname__", "a step")
            raise AssertionError(f"{name} took more than {timeout} s") from None

    def close(self) -> None:
        async def cancel_rest() -> None:
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.run(cancel_rest(), timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


# --- processes -----------------------------------------------------------------------


@dataclass
class Child:
    """A subprocess in a session of its own, its output in files under the test's tmp."""

    name: str
    command: list[str]
    cwd: Path
    env: dict[str, str]
    logs: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def log(self) -> Path:
        return self.logs / f"{self.name}.{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        """Everything this child wrote, over all its starts."""
        return "".join(
            (self.logs / f"{self.name}.{n}.log").read_text(errors="replace")
            for n in range(1, self.starts + 1)
        )

    def tail(self, lines: int = 40) -> str:
        if not self.starts:
            return f"--- {self.name}: never started"
        text = self.log.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {self.name} ({self.log}), last {len(text)} lines:\n" + "\n".join(text)

    def wait(self, timeout: float) -> int:
        """The exit status, once the child has exited by itself."""
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.wait(timeout)

    def terminate(self) -> int | None:
        """SIGTERM to the whole group, then SIGKILL if it lingers; the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_WITHIN)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        # Workers left behind by a master that died would keep the port: make sure.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process visible in /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # The command name may hold spaces and parentheses: split after its last ')'.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
    return parents


def descendants(pid: int) -> list[int]:
    parents = _parents()
    found: list[int] = []
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        kids = [p for p, parent in parents.items() if parent == current]
        found += kids
        frontier += kids
    return found


def _socket_inode(fd: Path) -> int | None:
    with contextlib.suppress(OSError):
        target = os.readlink(fd)
        if target.startswith("socket:["):
            return int(target[len("socket:[") : -1])
    return None


@dataclass
class Instance(Child):
    """One ``aiosite serve`` of the blog on 127.0.0.1:<port>."""

    port: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workers(self) -> list[int]:
        """The gunicorn workers: the processes under the master that have no children."""
        below = descendants(self.pid)
        parents = _parents()
        return sorted(p for p in below if not any(parents.get(q) == p for q in below))

    def busiest_worker(self) -> tuple[int, int]:
        """The worker holding the most established connections to the instance's port
        (nginx's connections stay with the worker that accepted them), and how many."""
        inodes = self._established_inodes()
        held = {
            pid: sum(_socket_inode(fd) in inodes for fd in Path(f"/proc/{pid}/fd").iterdir())
            for pid in self.workers()
        }
        busiest = max(held, key=lambda pid: held[pid])
        return busiest, held[busiest]

    def _established_inodes(self) -> set[int]:
        # /proc/net/tcp: "sl local_address rem_address st ... inode"; addresses in hex,
        # state 01 is ESTABLISHED.
        inodes = set()
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(f":{self.port:04X}") and fields[3] == "01":
                inodes.add(int(fields[9]))
        return inodes

    def wait_healthy(self) -> None:
        wait_until(
            lambda: self._answers("/healthz") == 200,
            f"{self.name} to answer /healthz with 200",
            self,
        )

    def wait_workers(self, count: int, besides: Collection[int] = ()) -> list[int]:
        """Until ``count`` workers run, none of them in ``besides``; their pids."""
        found: list[int] = []

        def enough() -> bool:
            nonlocal found
            found = [p for p in self.workers() if p not in besides]
            return len(found) >= count

        wait_until(enough, f"{count} new worker(s) of {self.name}", self)
        return found

    def _answers(self, path: str) -> int | None:
        if not self.running():
            raise AssertionError(f"{self.name} exited with {self.proc and self.proc.returncode}")
        try:
            with urllib.request.urlopen(self.base + path, timeout=5) as resp:  # noqa: S310
                status: int = resp.status
                return status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return None


def wait_until(check: Callable[[], bool], what: str, *children: Child) -> None:
    """Poll ``check`` (every 0.1 s) until true, for at most START_WITHIN seconds."""
    deadline = time.monotonic() + START_WITHIN
    while True:
        try:
            if check():
                return
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n" + "\n".join(c.tail() for c in children)) from None
        if time.monotonic() > deadline:
            logs = "\n".join(c.tail() for c in children)
            raise AssertionError(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.1)


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float) -> None:
    """Await ``check()`` every 0.1 s until it is true, for at most ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.1)


def run_command(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [AIOSITE, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"aiosite {' '.join(args)} exited {done.returncode}:\n{output}"
    return output


def copy_blog(where: Path) -> Path:
    project = where / "blog"
    shutil.copytree(
        EXAMPLE, project, ignore=shutil.ignore_patterns("var", "static_root", "__pycache__")
    )
    return project


# --- PostgreSQL and Redis --------------------------------------------------------------


async def create_database(name: str) -> str:
    """Create the database ``name``; its URL (asyncpg, straight to the server)."""
    admin = await asyncpg.connect(_ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return _ADMIN_URL.rsplit("/", 1)[0] + "/" + name


async def drop_database(name: str) -> None:
    admin = await asyncpg.connect(_ADMIN_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def redis_keys_of(marker: str) -> list[str]:
    """Patterns of the keys a run leaves in REDIS_DB: its sessions (their prefix has the
    marker), its rooms' history streams, and the hub's id counter of that database."""
    return [
        f"aiosite:{marker}:*",
        f"aiosite:channels:chat:{marker}*",
        "aiosite:channel-ids",
    ]


async def delete_redis_keys(patterns: list[str]) -> int:
    client = aioredis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    deleted = 0
    try:
        for pattern in patterns:
            keys = [key async for key in client.scan_iter(match=pattern, count=500)]
            if keys:
                deleted += await client.delete(*keys)
    finally:
        await client.aclose()
    return deleted


# --- HTTP clients ----------------------------------------------------------------------

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
USERNAME = re.compile(r'<span class="username"[^>]*>([^<]+)</span>')


def visitor_session(*origins: str) -> aiohttp.ClientSession:
    """A browser-like client: one cookie jar, Secure cookies sent to these plain-HTTP
    loopback origins (as a browser treats http://localhost as a secure context)."""
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=list(origins))
    return aiohttp.ClientSession(
        cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=20), raise_for_status=False
    )


async def form_token(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url) as resp:
        html = await resp.text()
        assert resp.status == 200, f"GET {url}: {resp.status}\n{html[:500]}"
    found = TOKEN.search(html)
    assert found, f"no CSRF token in {url}"
    return found.group(1)


async def log_in(session: aiohttp.ClientSession, base: str, username: str) -> None:
    token = await form_token(session, f"{base}/auth/login")
    form = {"csrf_token": token, "username": username, "password": PASSWORD}
    async with session.post(f"{base}/auth/login", data=form, allow_redirects=False) as resp:
        body = await resp.text()
        assert resp.status == 303, f"login: {resp.status}\n{body[:800]}"


def username_in(html: str) -> str | None:
    found = USERNAME.search(html)
    return found.group(1) if found else None


@dataclass
class Stream:
    """Requests sent as fast as ``concurrency`` clients go, until stopped; each outcome
    counted ("200", "503", "ClientOSError"...)."""

    session: aiohttp.ClientSession
    url: str
    concurrency: int = 6
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def done(self) -> int:
        return sum(self.outcomes.values())

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._client()) for _ in range(self.concurrency)]

    async def until_done(self, count: int, within: float = 60.0) -> None:
        target = count

        async def reached() -> bool:
            return self.done >= target

        await eventually(reached, f"{count} requests of the stream", within)

    async def stop(self) -> Counter[str]:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        return self.outcomes

    async def _client(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            try:
                async with self.session.get(self.url) as resp:
                    await resp.read()
                    outcome = str(resp.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                outcome = type(exc).__name__
                self.failures.append(f"{outcome}: {exc}")
            self.outcomes[outcome] += 1


@dataclass
class Writer:
    """Posts a new draft every ``pause`` seconds through nginx; remembers the slugs of the
    writes acknowledged with 2xx/3xx, and counts every other outcome."""

    session: aiohttp.ClientSession
    base: str
    token: str
    prefix: str
    pause: float = 0.2
    # Which step of the test is running: what the counts are reported under.
    phase: str = "start"
    acknowledged: list[tuple[str, str]] = field(default_factory=list)  # (phase, slug)
    refused: Counter[tuple[str, str]] = field(default_factory=Counter)  # (phase, outcome)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def until_acknowledged(self, phase: str, within: float = 15.0) -> None:
        """Until a write of ``phase`` is acknowledged: the writer goes on through it."""

        async def written() -> bool:
            return any(p == phase for p, _ in self.acknowledged)

        await eventually(written, f"a write acknowledged during {phase}", within)

    def summary(self) -> str:
        acknowledged = Counter(phase for phase, _ in self.acknowledged)
        refused = Counter[str]()
        for (phase, outcome), count in self.refused.items():
            refused[f"{phase} {outcome}"] += count
        return (
            f"{len(self.acknowledged)} writes acknowledged {dict(acknowledged)}; "
            f"not acknowledged: {dict(refused) or 'none'}"
        )

    async def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            slug = f"{self.prefix}-{n}"
            # As the browser sends the post form: multipart, the CSRF token first.
            form = aiohttp.FormData(quote_fields=False, default_to_multipart=True)
            form.add_field("csrf_token", self.token)
            form.add_field("title", f"Scale-out write {n}")
            form.add_field("slug", slug)
            form.add_field("body", f"Written during the scale-out test, number {n}.")
            try:
                async with self.session.post(
                    f"{self.base}/blog/new",
                    data=form,
                    headers={"X-CSRF-Token": self.token},
                    allow_redirects=False,
                ) as resp:
                    await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.refused[self.phase, type(exc).__name__] += 1
            else:
                if 200 <= status < 400:
                    self.acknowledged.append((self.phase, slug))
                else:
                    self.refused[self.phase, str(status)] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.pause)


async def stored_slugs(database_url: str, prefix: str) -> set[str]:
    """The slugs of the writer's posts, read from PostgreSQL itself (not the proxy)."""
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT slug FROM blog_post WHERE slug LIKE $1", prefix + "-%"
        )
    finally:
        await connection.close()
    return {row["slug"] for row in rows}


@dataclass
class Cluster:
    """The running cluster, as the test's steps use it."""

    loop: LoopThread
    project: Path
    database_url: str  # straight to PostgreSQL, to check what is stored
    proxy: TcpProxy  # what the instances reach PostgreSQL through
    a: Instance
    b: Instance
    nginx: RunningNginx
    static_root: Path
    marker: str  # in this run's slugs, room names and Redis keys
    visitor: aiohttp.ClientSession  # logged in as ada; through nginx or straight
    report: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return self.nginx.url

    @property
    def instances(self) -> tuple[Instance, Instance]:
        return self.a, self.b

    def served(self, instance: Instance, marker: str) -> int:
        """How many requests carrying ``marker`` ``instance`` logged (over its restarts)."""
        return sum(marker in line for line in instance.output().splitlines())

    def nginx_errors(self) -> int:
        """How many lines nginx's error log has: ``upstream_errors(since)`` reads on."""
        return len(self.nginx.error_log().splitlines())

    def upstream_errors(self, since: int) -> dict[str, int]:
        """What nginx logged about its upstreams since line ``since`` (each is an attempt
        it gave up on, and passed on to the next upstream or failed)."""
        kinds = Counter[str]()
        for line in self.nginx.error_log().splitlines()[since:]:
            if "upstream" in line:
                # "... [error] 123#123: *45 connect() failed (111: ...) while connecting
                # to upstream, client: ..." -> "connect() failed (111: ...)"
                kinds[re.sub(r"^.*?\*\d+ ", "", line).split(" while ")[0]] += 1
        return dict(kinds)

    def logs(self) -> str:
        nginx = self.nginx.error_log().splitlines()[-30:]
        return "\n".join(
            [self.a.tail(), self.b.tail(), "--- nginx error.log:", *nginx, *self.report]
        )

    def run(self, coro: Any, timeout: float = 90.0) -> Any:
        return self.loop.run(coro, timeout)


def start_cluster(stack: contextlib.ExitStack, tmp: Path, nginx_binary: Path) -> Cluster:
    """Build the cluster under ``tmp``; ``stack`` takes it down (in reverse order)."""
    logs = tmp / "logs"
    logs.mkdir()
    marker = f"scale-{uuid.uuid4().hex[:10]}"
    database = f"aiosite_{marker.replace('-', '_')}"
    loop = LoopThread()
    stack.callback(loop.close)
    database_url = loop.run(create_database(database))
    stack.callback(lambda: loop.run(drop_database(database)))
    stack.callback(lambda: loop.run(delete_redis_keys(redis_keys_of(marker))))
    proxy = TcpProxy()
    loop.run(proxy.start())
    stack.callback(lambda: loop.run(proxy.stop()))

    project = copy_blog(tmp)
    env = clean_env(
        AIOSITE_ENV="production",
        AIOSITE_SECURITY__SECRET_KEY=secrets.token_urlsafe(50),
        AIOSITE_DATABASE__URL=f"postgresql+asyncpg://root@127.0.0.1:{proxy.port}/{database}",
        # Four processes beside the rest of the suite on one PostgreSQL.
        AIOSITE_DATABASE__POOL_SIZE="3",
        AIOSITE_DATABASE__MAX_OVERFLOW="3",
        AIOSITE_REDIS__URL=f"redis://127.0.0.1:6379/{REDIS_DB}",
        AIOSITE_SESSION__BACKEND="redis",
        AIOSITE_SESSION__REDIS_PREFIX=f"aiosite:{marker}:session:",
        AIOSITE_CHANNELS__BACKEND="redis",
        # nginx on loopback (security.trusted_proxies' default) is the proxy in front.
        AIOSITE_SECURITY__TRUST_PROXY_HEADERS="true",
        AIOSITE_SERVER__GRACEFUL_TIMEOUT="10",
    )
    run_command(["db", "migrate"], project, env)
    run_command(["db", "seed", "blogsite/blog/fixtures/demo.yaml"], project, env)
    run_command(["collectstatic"], project, env)

    a, b = (
        Instance(
            name=name,
            command=[AIOSITE, "serve", "--workers", str(WORKERS), "--bind", bind],
            cwd=project,
            env=env,
            logs=logs,
            port=int(bind.rsplit(":", 1)[1]),
        )
        for name, bind in (
            ("a", f"127.0.0.1:{free_port()}"),
            ("b", f"127.0.0.1:{free_port()}"),
        )
    )
    for instance in (a, b):
        instance.start()
        stack.callback(instance.terminate)

    # nginx's site file as a deployment writes it, for these two upstreams.
    port = free_port()
    site_file = tmp / "blogsite.nginx"
    deploy_env = {
        **env,
        "AIOSITE_DEPLOY__LISTEN": json.dumps([f"127.0.0.1:{port}"]),
        "AIOSITE_DEPLOY__SERVER_NAMES": json.dumps(["localhost", "127.0.0.1"]),
        "AIOSITE_DEPLOY__UPSTREAMS": json.dumps([f"127.0.0.1:{i.port}" for i in (a, b)]),
    }
    run_command(["deploy", "nginx", "--output", str(site_file)], project, deploy_env)
    nginx = stack.enter_context(running_nginx(nginx_binary, site_file, tmp / "nginx", port))

    a.wait_healthy()
    b.wait_healthy()
    visitor = loop.run(_logged_in(nginx.url, a.base, b.base))
    stack.callback(lambda: loop.run(visitor.close()))
    built = Cluster(
        loop=loop,
        project=project,
        database_url=database_url,
        proxy=proxy,
        a=a,
        b=b,
        nginx=nginx,
        static_root=project / "static_root",
        marker=marker,
        visitor=visitor,
    )
    return built


async def _logged_in(base: str, *others: str) -> aiohttp.ClientSession:
    """A client logged in as ada through ``base``, its cookies sent to ``others`` too."""
    visitor = visitor_session(base, *others)
    await log_in(visitor, base, "ada")
    return visitor


def new_marker() -> str:
    return uuid.uuid4().hex[:16]
