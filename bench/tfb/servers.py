"""The implementations under test, and starting, waiting for and stopping their servers.

Each implementation runs as one worker process on 127.0.0.1, started from bench/ with
bench/.venv's python (or another one, e.g. the main .venv's for aiosite in the tests).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

BENCH = Path(__file__).resolve().parent.parent
BENCH_PYTHON = BENCH / ".venv" / "bin" / "python"
TESTS = ("plaintext", "json", "db", "queries", "fortunes", "updates")
DB_TESTS = ("db", "queries", "fortunes", "updates")
DEFAULT_DATABASE_URL = "postgresql://root@127.0.0.1:5432/hello_world"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0

_AIOSITE = ("-m", "aiosite", "--project", "tfb/aiosite_site", "run", "--no-reload")


@dataclass(frozen=True)
class Implementation:
    """How to start one implementation: ``python *args`` with ``{port}`` filled in."""

    name: str
    args: tuple[str, ...]
    prefix: str = ""
    tests: tuple[str, ...] = TESTS
    env: Mapping[str, str] = field(default_factory=dict)
    # gunicorn serves from a forked worker: that child is the process to measure.
    measure_child: bool = False

    def argv(self, python: str | os.PathLike[str], port: int) -> list[str]:
        return [str(python), *(a.replace("{port}", str(port)) for a in self.args)]


def _aiosite(name: str, prefix: str, tests: tuple[str, ...]) -> Implementation:
    return Implementation(
        name,
        (*_AIOSITE, "--host", "127.0.0.1", "--port", "{port}"),
        prefix,
        tests,
        # AIOSITE_DATABASE__URL and AIOSITE_SECURITY__SECRET_KEY are filled in at start.
        {"AIOSITE_ENV": "production"},
    )


REGISTRY: dict[str, Implementation] = {
    impl.name: impl
    for impl in (
        _aiosite("aiosite", "", TESTS),
        _aiosite("aiosite-orm", "/orm", DB_TESTS),
        Implementation("aiohttp-plain", ("-m", "tfb.peers.aiohttp_plain", "--port", "{port}")),
        Implementation("aiohttp-tuned", ("-m", "tfb.peers.aiohttp_tuned", "--port", "{port}")),
        Implementation(
            "fastapi",
            (
                "-m",
                "uvicorn",
                "tfb.peers.fastapi_app:app",
                "--host",
                "127.0.0.1",
                "--port",
                "{port}",
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
                "--log-level",
                "warning",
            ),
        ),
        Implementation(
            "django",
            (
                "-m",
                "gunicorn",
                "--workers",
                "1",
                "--worker-class",
                "sync",
                "--bind",
                "127.0.0.1:{port}",
                "tfb.peers.django_site.wsgi:application",
            ),
            env={"DJANGO_SETTINGS_MODULE": "tfb.peers.django_site.settings"},
            measure_child=True,
        ),
    )
}
BASELINE = "aiohttp-tuned"


def database_url() -> str:
    return os.environ.get("TFB_DATABASE_URL", DEFAULT_DATABASE_URL)


def resolve(names: Sequence[str]) -> list[Implementation]:
    """Implementations by name (all of them for none); names may be comma-separated."""
    wanted = [n for name in names for n in name.split(",") if n] or list(REGISTRY)
    unknown = [n for n in wanted if n not in REGISTRY]
    if unknown:
        raise SystemExit(f"unknown implementation(s) {unknown}; known: {', '.join(REGISTRY)}")
    return [REGISTRY[n] for n in dict.fromkeys(wanted)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class StartError(RuntimeError):
    """A server exited or did not answer in time; the message ends with its output."""


@dataclass
class Server:
    """A running implementation."""

    impl: Implementation
    port: int
    proc: subprocess.Popen[bytes]
    log: IO[bytes]

    @property
    def name(self) -> str:
        return self.impl.name

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.impl.prefix}"

    def url(self, test: str, queries: int = 20) -> str:
        query = f"?queries={queries}" if test in ("queries", "updates") else ""
        return f"{self.base_url}/{test}{query}"

    def output_tail(self, lines: int = 30) -> str:
        self.log.flush()
        text = Path(self.log.name).read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def measured_pid(self) -> int:
        """The process that serves requests: gunicorn's worker, else the server itself."""
        if not self.impl.measure_child:
            return self.proc.pid
        kids = children(self.proc.pid)
        if not kids:
            raise StartError(f"{self.name}: gunicorn (pid {self.proc.pid}) has no worker")
        return kids[0]


def children(pid: int) -> list[int]:
    """Direct children of ``pid``, from /proc/PID/task/*/children."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return sorted(set(found))


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    for child in children(pid):
        found += [child, *descendants(child)]
    return found


def server_env(impl: Implementation, dsn: str) -> dict[str, str]:
    # AIOSITE_* from the caller's shell (e.g. a test run's env) must not leak into a server.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOSITE_")}
    env.update(impl.env)
    env["TFB_DATABASE_URL"] = dsn
    if "AIOSITE_ENV" in impl.env:
        env["AIOSITE_DATABASE__URL"] = dsn
        # A production site refuses to start without a secret key of its own; the
        # benchmark keeps no sessions, so a new one each start costs nothing.
        env["AIOSITE_SECURITY__SECRET_KEY"] = secrets.token_urlsafe(50)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def start(
    impl: Implementation,
    *,
    python: str | os.PathLike[str] = BENCH_PYTHON,
    cpu: str | None = None,
    dsn: str | None = None,
    timeout: float = READY_TIMEOUT,
) -> Server:
    """Start ``impl`` on a free port (pinned to ``cpu`` with taskset) and wait until it answers."""
    port = free_port()
    argv = impl.argv(python, port)
    if cpu is not None:
        argv = ["taskset", "-c", cpu, *argv]
    log = tempfile.NamedTemporaryFile(prefix=f"tfb-{impl.name}-", suffix=".log")  # noqa: SIM115
    proc = subprocess.Popen(
        argv,
        cwd=BENCH,
        env=server_env(impl, dsn or database_url()),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        # Its own session: a Ctrl-C in the terminal reaches only us, and we stop it.
        start_new_session=True,
    )
    server = Server(impl, port, proc, log)
    try:
        wait_ready(server, timeout)
    except BaseException:
        stop(server)
        raise
    return server


def wait_ready(server: Server, timeout: float = READY_TIMEOUT) -> None:
    """Poll GET <prefix>/json (or /db) until any HTTP answer, the exit, or the timeout."""
    probe = server.url("json" if "json" in server.impl.tests else "db")
    deadline = time.monotonic() + timeout
    while True:
        code = server.proc.poll()
        if code is not None:
            raise StartError(f"{server.name} exited with {code}:\n{server.output_tail()}")
        if time.monotonic() > deadline:
            raise StartError(
                f"{server.name} did not answer {probe} within {timeout:.0f} s:\n"
                f"{server.output_tail()}"
            )
        if _answers(probe):
            return
        time.sleep(0.1)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5):  # noqa: S310 (http://127.0.0.1 only)
            return True
    except urllib.error.HTTPError:
        return True  # it answered; whether correctly is the checker's business
    except OSError:
        return False


def stop(server: Server) -> None:
    stop_process(server.proc)
    server.log.close()


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after STOP_TIMEOUT; children left behind are killed too."""
    kids = descendants(proc.pid) if proc.poll() is None else []
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pid in kids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def running(
    impls: Sequence[Implementation],
    *,
    python: str | os.PathLike[str] = BENCH_PYTHON,
    cpu: str | None = None,
    dsn: str | None = None,
) -> Iterator[dict[str, Server | StartError]]:
    """Start every implementation; a failed start is kept as its error. Stops all at exit."""
    started: dict[str, Server | StartError] = {}
    try:
        for impl in impls:
            try:
                started[impl.name] = start(impl, python=python, cpu=cpu, dsn=dsn)
            except StartError as exc:
                started[impl.name] = exc
        yield started
    finally:
        for server in started.values():
            if isinstance(server, Server):
                stop(server)
