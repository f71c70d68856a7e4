"""``aiosite serve`` as an operator runs it: gunicorn's master and aiohttp workers in
subprocesses, signalled as systemd or a deploy script would."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import POSTGRESQL_URL, require_service
from tests.db.proxy import TcpProxy
from tests.support.processes import DEADLINE, free_port, wait_for
from tests.support.projects import write_served_project

pytestmark = pytest.mark.e2e

AIOSITE = str(Path(sys.executable).parent / "aiosite")
HOST = "serve.test"

ROUTES = """\
import asyncio
import os

from aiohttp import web

from aiosite import Routes, json_response, open_websocket, stream_channel

routes = Routes()


@routes.get("/pid", name="pid")
async def pid(request: web.Request) -> web.Response:
    return json_response({"pid": os.getpid()})


@routes.get("/slow", name="slow")
async def slow(request: web.Request) -> web.Response:
    if "marker" in request.query:  # tells the test the request is being handled
        with open(request.query["marker"], "w") as marker:
            marker.write("in flight")
    await asyncio.sleep(float(request.query["s"]))
    return json_response({"slept": True})


@routes.websocket("/ws", name="ws")
async def ws(request: web.Request) -> web.WebSocketResponse:
    async with open_websocket(request) as sock:
        await sock.send_str("hello")
        async for _ in sock:
            pass
    return sock


@routes.get("/events", name="events")
async def events(request: web.Request) -> web.StreamResponse:
    return await stream_channel(request, "news")
"""


def write_project(root: Path, *, production_yaml: str = "{}\n") -> Path:
    return write_served_project(root, "servesite", ROUTES, production_yaml=production_yaml)


def production_env(**extra: str) -> dict[str, str]:
    """A production environment as a deployment sets it: no AIOSITE_ENV (serve's default
    is production), the secret key and host names from the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOSITE_")}
    env.update(
        AIOSITE_SECURITY__SECRET_KEY=secrets.token_urlsafe(50),
        AIOSITE_SECURITY__ALLOWED_HOSTS=json.dumps(["127.0.0.1", HOST]),
        # No `aiosite collectstatic` run: the static folders are served as they are.
        AIOSITE_STATIC__MANIFEST="false",
    )
    env.update(extra)
    return env


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    project: Path
    port: int
    err: Path
    unix: Path | None = None
    pid_file: Path | None = None
    exited: list[int] = field(default_factory=list)

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def connection(self, timeout: float = 10) -> http.client.HTTPConnection:
        if self.unix is None:
            return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        return UnixHTTPConnection(str(self.unix), timeout)

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        conn = self.connection()
        try:
            conn.request("GET", path, headers={"Host": HOST, **(headers or {})})
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()

    def answering_pid(self) -> int:
        status, body = self.get("/pid")
        assert status == 200, body
        pid: int = json.loads(body)["pid"]
        return pid

    def workers(self) -> set[int]:
        """The master's children: its workers."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            return {int(pid) for pid in children.read_text().split()}
        except OSError:
            return set()

    def wait_ready(self, workers: int) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"aiosite serve exited with {self.proc.returncode}:\n{self.stderr()}")
            if len(self.workers()) != workers:
                return False
            try:
                self.get("/pid")
            except OSError:
                return False
            return True

        wait_for(ready, f"aiosite serve with {workers} worker(s) to answer", self.stderr)


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(
        project: Path, *args: str, env: dict[str, str] | None = None, unix: Path | None = None
    ) -> Served:
        """Serve ``project`` on a free port, or on ``unix`` (which the caller's ``env``
        names in server.bind)."""
        port = free_port()
        err = tmp_path_factory.mktemp("serve") / "stderr.log"
        bind = ("--bind", f"127.0.0.1:{port}") if unix is None else ()
        with err.open("wb") as stderr:
            proc = subprocess.Popen(
                [AIOSITE, "serve", *bind, *args],
                cwd=project,
                stdout=stderr,
                stderr=stderr,
                env=env or production_env(),
                start_new_session=True,
            )
        served = Served(proc, project, port, err, unix=unix)
        started.append(served)
        return served

    yield start
    for served in started:  # the master and its workers, whatever a test left running
        if served.proc.poll() is None:
            os.killpg(served.proc.pid, signal.SIGKILL)
            served.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory, servers: Callable[..., Served]) -> Served:
    """One server for the tests that leave it running: 2 workers, a pid file."""
    root = tmp_path_factory.mktemp("two")
    project = write_project(root / "site")
    pid_file = root / "master.pid"
    served = servers(
        project,
        "--workers",
        "2",
        "--graceful-timeout",
        "5",
        "--pid",
        str(pid_file),
        "--access-log",
    )
    served.pid_file = pid_file
    served.wait_ready(2)
    return served


class Stream:
    """Requests one after another, each on a new connection, in a thread: ``/pid`` (the
    answering pids in ``pids``) or another ``path`` (each 200 counted in ``answers``)."""

    def __init__(self, served: Served, path: str = "/pid") -> None:
        self.served = served
        self.path = path
        self.answers = 0
        self.pids: list[int] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.path == "/pid":
                    self.pids.append(self.served.answering_pid())
                else:
                    status, body = self.served.get(self.path)
                    assert status == 200, f"{self.path}: {status} {body}"
                self.answers += 1
            except (OSError, AssertionError, http.client.HTTPException) as exc:
                self.failures.append(repr(exc))
            time.sleep(0.01)


def test_serves_with_two_workers_and_logs_each_request(two_workers: Served) -> None:
    status, body = two_workers.get("/pid", {"X-Request-ID": "serve-a-1"})
    assert status == 200
    assert json.loads(body)["pid"] in two_workers.workers()
    assert two_workers.pid_file is not None
    assert int(two_workers.pid_file.read_text()) == two_workers.proc.pid
    # The workers' Prometheus files go to metrics.multiprocess_dir, made by the master.
    assert (two_workers.project / "var" / "prometheus").is_dir()
    # The access log line carries the request id and the time taken.
    wait_for(
        lambda: "[serve-a-1]" in two_workers.stderr(), "the access log line", two_workers.stderr
    )
    line = next(x for x in two_workers.stderr().splitlines() if "[serve-a-1]" in x)
    assert '"GET /pid" 200' in line
    assert line.rstrip().endswith("ms")
    # Production: no debug page for an error of the client.
    assert two_workers.get("/pid", {"Host": "elsewhere.example"})[0] == 400


def _replaced(served: Served, old: set[int]) -> Callable[[], bool]:
    def check() -> bool:
        now = served.workers()
        return len(now) == 2 and not now & old

    return check


def test_sighup_and_reload_workers_replace_workers_without_failing_a_request(
    two_workers: Served,
) -> None:
    with Stream(two_workers) as stream:
        old = two_workers.workers()
        two_workers.proc.send_signal(signal.SIGHUP)
        wait_for(_replaced(two_workers, old), "new workers after SIGHUP", two_workers.stderr)
        # The new workers answer: what the stream gets now is from them.
        wait_for(lambda: stream.pids[-1] not in old, "an answer from a new worker")

        old = two_workers.workers()
        assert two_workers.pid_file is not None
        command = subprocess.run(
            [AIOSITE, "serve", "--reload-workers", "--pid", str(two_workers.pid_file)],
            cwd=two_workers.project,
            env=production_env(),
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            check=False,
        )
        assert command.returncode == 0, command.stderr
        assert f"sent SIGHUP to the server (pid {two_workers.proc.pid})" in command.stdout
        wait_for(_replaced(two_workers, old), "new workers after --reload-workers")
        wait_for(lambda: stream.pids[-1] not in old, "an answer from a new worker")
        time.sleep(0.3)
    assert stream.failures == []
    assert len(stream.pids) > 20
    assert "Traceback" not in two_workers.stderr()
    # The old workers exited quietly (gunicorn's wrapper once logged a second close of
    # each listening socket).
    assert "Worker exiting" in two_workers.stderr()
    assert "Error while closing socket" not in two_workers.stderr()


def test_reload_workers_without_a_running_server(tmp_path: Path) -> None:
    project = write_project(tmp_path / "site")
    stale = tmp_path / "stale.pid"
    stale.write_text("999999999\n")
    for pid_args, expected in (
        ((), "set server.pid_file"),
        (("--pid", str(tmp_path / "none.pid")), "no pid file at"),
        (("--pid", str(stale)), "no process 999999999"),
    ):
        command = subprocess.run(
            [AIOSITE, "serve", "--reload-workers", *pid_args],
            cwd=project,
            env=production_env(),
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            check=False,
        )
        assert command.returncode == 2, command.stderr
        assert expected in command.stderr
        assert len(command.stderr.strip().splitlines()) == 1, command.stderr


def test_a_killed_worker_is_replaced_and_the_others_keep_serving(two_workers: Served) -> None:
    workers = two_workers.workers()
    victim = max(workers)
    os.kill(victim, signal.SIGKILL)
    for _ in range(20):  # the survivor (and the accept queue) keep answering
        assert two_workers.answering_pid() != victim
    wait_for(
        lambda: len(two_workers.workers()) == 2 and victim not in two_workers.workers(),
        "a worker in place of the killed one",
        two_workers.stderr,
    )
    assert two_workers.answering_pid() in two_workers.workers()


async def test_sigterm_finishes_requests_in_flight_and_closes_websockets_with_1001(
    tmp_path: Path, servers: Callable[..., Served]
) -> None:
    served = servers(write_project(tmp_path / "site"), "--workers", "1", "--graceful-timeout", "10")
    await asyncio.to_thread(served.wait_ready, 1)
    base = f"http://127.0.0.1:{served.port}"
    headers = {"Host": HOST}
    async with aiohttp.ClientSession(headers=headers) as session:
        ws = await session.ws_connect(f"{base}/ws")
        assert (await ws.receive_str()) == "hello"
        events = await session.get(f"{base}/events")
        assert events.status == 200
        first = await asyncio.wait_for(events.content.readline(), 10)
        assert first.startswith(b"retry:")
        marker = tmp_path / "slow-in-flight"
        slow = asyncio.create_task(
            session.get(f"{base}/slow", params={"s": "3", "marker": str(marker)})
        )
        await asyncio.to_thread(
            wait_for, marker.exists, "the slow request in flight", served.stderr
        )

        started = time.monotonic()
        served.proc.send_signal(signal.SIGTERM)
        closing = await asyncio.wait_for(ws.receive(), 10)
        assert closing.type == aiohttp.WSMsgType.CLOSE
        assert closing.data == 1001
        rest = await asyncio.wait_for(events.content.read(), 10)  # ends, no error
        assert b"data" not in rest
        response = await asyncio.wait_for(slow, 10)
        assert response.status == 200
        assert await response.json() == {"slept": True}
        await ws.close()
        events.release()
    code = await asyncio.to_thread(served.proc.wait, 15)
    assert code == 0, served.stderr()
    assert time.monotonic() - started < 10  # within graceful_timeout
    assert "Traceback" not in served.stderr()


def test_refuses_to_serve_insecurely_then_insecure_starts_on_a_unix_socket(
    tmp_path: Path, servers: Callable[..., Served]
) -> None:
    project = write_project(tmp_path / "site", production_yaml="debug: true\n")
    refused = subprocess.run(
        [AIOSITE, "serve"],
        cwd=project,
        env=production_env(
            AIOSITE_SECURITY__SECRET_KEY="aiosite-insecure-" + "x" * 40,
            AIOSITE_SECURITY__ALLOWED_HOSTS="[]",
        ),
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    line = lines[0]
    assert line.startswith("error: refusing to serve the 'production' environment insecurely")
    for setting in ("debug.enabled", "security.secret_key", "security.allowed_hosts"):
        assert setting in line
    assert "set debug: false in config/production.yaml (or AIOSITE_DEBUG__ENABLED" in line
    assert "AIOSITE_SECURITY__SECRET_KEY" in line
    assert line.endswith("or pass --insecure")

    # Any host name accepted: --insecure starts all the same; here on a unix socket named
    # relative to the project, as server.bind may.
    served = servers(
        project,
        "--workers",
        "1",
        "--insecure",
        env=production_env(
            AIOSITE_DEBUG__ENABLED="false",
            AIOSITE_SECURITY__ALLOWED_HOSTS='["*"]',
            AIOSITE_SERVER__BIND='["unix:var/site.sock"]',
        ),
        unix=project / "var" / "site.sock",
    )
    served.wait_ready(1)
    assert (project / "var" / "site.sock").is_socket()
    assert served.answering_pid() in served.workers()
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=15) == 0
    assert not (project / "var" / "site.sock").exists()  # gunicorn removes it


async def test_workers_boot_while_the_database_is_down_and_the_site_recovers(
    tmp_path: Path, servers: Callable[..., Served]
) -> None:
    """A worker that starts during a database outage (here every one, then one that
    replaces a killed worker) boots: the master keeps running, pages answer 503 and
    /readyz says why until the database is back."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    proxy = TcpProxy()
    await proxy.start()
    await proxy.stop()  # its port refuses connections until start()
    url = POSTGRESQL_URL.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    served = servers(
        write_project(tmp_path / "site"),
        "--workers",
        "2",
        env=production_env(AIOSITE_DATABASE__URL=url),
    )
    try:
        await asyncio.to_thread(served.wait_ready, 2)
        warning = "serving 503 pages until it answers; /readyz reports it"
        await asyncio.to_thread(
            wait_for, lambda: served.stderr().count(warning) == 2, "both workers' boot"
        )
        assert "cannot connect to postgresql+asyncpg://" in served.stderr()
        status, body = await asyncio.to_thread(served.get, "/readyz")
        assert status == 503
        assert "cannot connect" in json.loads(body)["checks"]["database"]

        with Stream(served, "/healthz") as stream:
            victim = max(served.workers())
            os.kill(victim, signal.SIGKILL)
            await asyncio.to_thread(
                wait_for,
                lambda: len(served.workers()) == 2 and victim not in served.workers(),
                "a worker in place of the killed one",
                served.stderr,
            )
            # The new worker booted (it logged the outage too) and the master runs on.
            await asyncio.to_thread(
                wait_for,
                lambda: served.stderr().count(warning) == 3,
                "the new worker's boot",
                served.stderr,
            )
            answered = stream.answers
            await asyncio.to_thread(wait_for, lambda: stream.answers > answered + 5, "answers")
        assert served.proc.poll() is None, served.stderr()
        # The request the killed worker held when it died is lost with it (the stream
        # sends one at a time); every other one was answered.
        assert len(stream.failures) <= 1, stream.failures
        assert all("Connection" in f or "Disconnected" in f for f in stream.failures)
        assert "Worker failed to boot" not in served.stderr()

        await proxy.start()

        def ready() -> bool:
            return all(served.get("/readyz")[0] == 200 for _ in range(4))

        await asyncio.to_thread(wait_for, ready, "/readyz 200 once the database is back")
    finally:
        if proxy._server is not None and proxy._server.is_serving():
            await proxy.stop()


def test_access_log_format_from_the_command_line_and_the_settings(
    tmp_path: Path, servers: Callable[..., Served]
) -> None:
    """server.access_log_format (or --access-log-format): aiohttp's directives, the
    request id as %{X-Request-ID}o; secret query values stay masked."""
    project = write_project(tmp_path / "site")
    log_format = '%a "%r" %s %b id=%{X-Request-ID}o ua=%{User-Agent}i took=%Tf'
    served = servers(project, "--workers", "1", "--access-log", "--access-log-format", log_format)
    served.wait_ready(1)
    status, _ = served.get("/pid?token=abc&page=2", {"X-Request-ID": "fmt-1", "User-Agent": "t/1"})
    assert status == 200
    wait_for(lambda: "id=fmt-1 " in served.stderr(), "the access log line", served.stderr)
    line = next(x for x in served.stderr().splitlines() if "id=fmt-1 " in x)
    message = line[line.index("127.0.0.1 ") :]
    assert message.startswith('127.0.0.1 "GET /pid?token=********&page=2 HTTP/1.1" 200 ')
    assert re.search(r" id=fmt-1 ua=t/1 took=\d+\.\d{6}$", message), line
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=15) == 0

    # A directive aiohttp does not know: one line naming the setting, nothing started.
    refused = subprocess.run(
        [AIOSITE, "serve"],
        cwd=project,
        env=production_env(AIOSITE_SERVER__ACCESS_LOG_FORMAT="%a %x"),
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert refused.returncode == 2
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "server.access_log_format" in refused.stderr
    assert "unknown directive '%x'" in refused.stderr
    flag = subprocess.run(
        [AIOSITE, "serve", "--access-log-format", "%{HOME}e"],
        cwd=project,
        env=production_env(),
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert flag.returncode == 2
    assert flag.stderr.strip() == (
        "error: --access-log-format: unknown directive '%{HOME}e': use "
        "%a %t %r %s %b %T %Tf %D %P %{Header}i %{Header}o"
    )


def test_run_logs_in_the_access_log_format_of_the_settings(tmp_path: Path) -> None:
    project = write_project(tmp_path / "site")
    port = free_port()
    err = tmp_path / "run.log"
    env = production_env(
        AIOSITE_ENV="production",
        AIOSITE_SERVER__ACCESS_LOG="true",
        AIOSITE_SERVER__ACCESS_LOG_FORMAT="%s %r [%{X-Request-ID}o]",
    )
    with err.open("wb") as out:
        proc = subprocess.Popen(
            [AIOSITE, "run", "--no-reload", "--port", str(port)],
            cwd=project,
            stdout=out,
            stderr=out,
            env=env,
            start_new_session=True,
        )
    try:
        served = Served(proc, project, port, err)
        wait_for(lambda: _answers(served), "aiosite run to answer", served.stderr)
        assert served.get("/pid", {"X-Request-ID": "run-fmt-1"})[0] == 200
        wait_for(lambda: "[run-fmt-1]" in served.stderr(), "the access log line", served.stderr)
        assert "200 GET /pid HTTP/1.1 [run-fmt-1]" in served.stderr()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)


def _answers(served: Served) -> bool:
    if served.proc.poll() is not None:
        pytest.fail(f"the server exited with {served.proc.returncode}:\n{served.stderr()}")
    try:
        served.get("/pid")
    except OSError:
        return False
    return True


def test_refusal_names_where_debug_comes_from_and_each_refused_setting(tmp_path: Path) -> None:
    """debug on through the environment alone: the refusal names both places; a
    development key among the fallbacks is refused too (problems are picked by their
    setting, not by their wording)."""
    project = write_project(tmp_path / "site")
    refused = subprocess.run(
        [AIOSITE, "serve"],
        cwd=project,
        env=production_env(
            AIOSITE_DEBUG__ENABLED="true",
            AIOSITE_SECURITY__SECRET_KEY_FALLBACKS=json.dumps(["aiosite-insecure-" + "y" * 40]),
        ),
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    problems = lines[0].split(" | ")
    assert len(problems) == 2, lines[0]
    assert problems[0].endswith(
        "set debug: false in config/production.yaml (or AIOSITE_DEBUG__ENABLED=false, if the "
        "environment sets it)"
    )
    assert problems[1].startswith("security.secret_key_fallbacks: item 0 is a development key")


def test_a_worker_boots_without_alembic_noise(
    tmp_path: Path, servers: Callable[..., Served]
) -> None:
    """The migrations readiness check reads the scripts' heads at each worker's start;
    Alembic's INFO lines about its plugins stay out of the log."""
    project = write_project(tmp_path / "site")
    env = production_env(AIOSITE_DATABASE__URL=f"sqlite+aiosqlite:///{tmp_path}/db.sqlite3")
    init = subprocess.run(
        [AIOSITE, "db", "init"],
        cwd=project,
        env={**env, "AIOSITE_ENV": "production"},
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert init.returncode == 0, init.stderr
    served = servers(project, "--workers", "1", env=env)
    served.wait_ready(1)
    _, body = served.get("/readyz")
    assert "migrations" in json.loads(body)["checks"], body  # the heads were read
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=15) == 0
    log = served.stderr()
    assert "Booting worker" in log
    assert "alembic" not in log
    assert "setup plugin" not in log
    assert "Error while closing socket" not in log
