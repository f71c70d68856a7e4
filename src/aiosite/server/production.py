"""The production server: gunicorn's master process and aiohttp's gunicorn workers.

The master binds the sockets, forks the workers, replaces a worker that dies or hangs,
and on SIGHUP starts new workers before it stops the old ones. It never imports the
project's code (no preload): each worker loads the settings and builds the site itself
(``aiosite.server.worker``), so new workers run the project's current code and config.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from aiosite.server.protocol import GuardedAppRunner
from aiosite.settings.sections import ServerSettings

# Where prometheus-client keeps the metrics of every worker (its multiprocess mode).
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# Of its graceful timeout, the part a worker gives requests in flight to finish; the rest
# is for the site's cleanup before the master kills the worker (aiohttp's worker: 95%).
IN_FLIGHT_SHARE = 0.95
UNIX_PREFIX = "unix:"


@dataclass(frozen=True)
class ServeOptions:
    """Everything the master and its workers need: the ``server:`` settings with the
    command line's overrides."""

    project_dir: Path
    env: str
    site_name: str
    bind: tuple[str, ...]
    workers: int
    worker_timeout: int
    graceful_timeout: int
    max_requests: int = 0
    max_requests_jitter: int = 0
    pid_file: Path | None = None
    # None: the server.access_log setting decides.
    access_log: bool | None = None
    # None: the server.access_log_format setting decides.
    access_log_format: str | None = None
    log_level: str = "INFO"
    # metrics.multiprocess_dir: the master makes its workers' directory in it, if any.
    metrics_dir: Path | None = None
    # server.drain_timeout (0: idle connections are closed at once).
    drain_timeout: float = 0.0

    @property
    def shutdown_timeout(self) -> float:
        return self.graceful_timeout * IN_FLIGHT_SHARE

    @property
    def worker_drain_timeout(self) -> float:
        """The drain, within the time the master gives a stopping worker: it counts
        against ``shutdown_timeout`` (requests in flight run on during it and get what is
        left after it), so a worker is done within graceful_timeout and never killed."""
        return min(self.drain_timeout, self.shutdown_timeout)


def addresses(server: ServerSettings, project_dir: Path) -> tuple[str, ...]:
    """The addresses to listen on: ``server.bind``, or ``server.host``:``server.port``;
    a relative unix socket path is the project's."""
    if not server.bind:
        host = f"[{server.host}]" if ":" in server.host else server.host
        return (f"{host}:{server.port}",)
    return tuple(project_address(address, project_dir) for address in server.bind)


def project_address(address: str, project_dir: Path) -> str:
    if address.startswith(UNIX_PREFIX):
        path = Path(address[len(UNIX_PREFIX) :]).expanduser()
        return f"{UNIX_PREFIX}{project_dir / path}"
    return address


def worker_count(workers: int) -> int:
    """``workers``, or one per CPU for 0: an asyncio worker keeps one core busy."""
    return workers or os.cpu_count() or 1


def worker_class() -> str:
    """aiohttp's gunicorn worker, on uvloop when it is installed."""
    if importlib.util.find_spec("uvloop") is not None:
        return "aiohttp.worker.GunicornUVLoopWebWorker"
    return "aiohttp.worker.GunicornWebWorker"


def gunicorn_settings(options: ServeOptions) -> dict[str, Any]:
    """gunicorn's configuration for ``options``."""
    return {
        "bind": list(options.bind),
        "workers": worker_count(options.workers),
        "worker_class": worker_class(),
        "timeout": options.worker_timeout,
        "graceful_timeout": options.graceful_timeout,
        "max_requests": options.max_requests,
        "max_requests_jitter": options.max_requests_jitter,
        "pidfile": str(options.pid_file) if options.pid_file is not None else None,
        "proc_name": f"aiosite {options.site_name}",
        "loglevel": options.log_level.lower(),
        # The workers write aiosite's access log (request id, time taken); gunicorn's
        # would be a second, poorer one.
        "accesslog": None,
        # gunicorn's control socket lives at one path per user: two servers of one user
        # would take it from each other. Signals do what it does.
        "control_socket_disable": True,
        "child_exit": _child_exited,
        "post_fork": _plain_sockets,
    }


def _plain_sockets(arbiter: Any, worker: Any) -> None:
    # aiohttp's worker serves gunicorn's listener objects; uvloop closes the descriptor,
    # then calls close() on an object that is not a socket.socket, expecting the EBADF,
    # which gunicorn's wrapper logs ("Error while closing socket [Errno 9] Bad file
    # descriptor") at every worker exit. Given the socket itself, uvloop detaches it.
    worker.sockets = [getattr(listener, "sock", listener) for listener in worker.sockets]


def _child_exited(arbiter: Any, worker: Any) -> None:
    # A dead worker's live metrics (gauges) must not be summed with the living ones'.
    if os.environ.get(METRICS_DIR_VARIABLE):
        from aiosite.metrics import worker_exited

        worker_exited(worker.pid)


class ProductionServer(BaseApplication):  # type: ignore[misc]
    """gunicorn's application: its configuration from ``ServeOptions``, and for each
    worker the async factory aiohttp's worker calls to get the site's runner."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        super().__init__(prog="aiosite serve")

    def load_config(self) -> None:
        # Also on SIGHUP: the same options (the command line's and the settings the
        # master read at its start); the workers read the settings afresh.
        for name, value in gunicorn_settings(self.options).items():
            self.cfg.set(name, value)

    def load(self) -> Callable[[], Awaitable[GuardedAppRunner]]:
        options = self.options

        async def runner() -> GuardedAppRunner:
            # In the worker, after the fork: the project's code is imported here.
            from aiosite.server.worker import site_runner

            return await site_runner(options)

        return runner


def serve(options: ServeOptions) -> None:
    """Run the master until SIGTERM (or SIGINT, SIGQUIT), which stops it gracefully."""
    for address in options.bind:
        if address.startswith(UNIX_PREFIX):
            # The socket's folder (the project's var/, say) may not exist yet.
            Path(address[len(UNIX_PREFIX) :]).parent.mkdir(parents=True, exist_ok=True)
    metrics = None
    if options.metrics_dir is not None:
        from aiosite.metrics import prepare_multiprocess_dir, release_multiprocess_dir

        # This master's own directory: another server of the project keeps its own.
        metrics = prepare_multiprocess_dir(options.metrics_dir)
        # Before the workers fork: each one's prometheus-client reads it at import.
        os.environ[METRICS_DIR_VARIABLE] = str(metrics)
    master = os.getpid()
    try:
        ProductionServer(options).run()
    finally:
        # A worker leaves gunicorn's loop through here too (SystemExit): only the master
        # removes the directory.
        if metrics is not None and os.getpid() == master:
            release_multiprocess_dir(metrics)
