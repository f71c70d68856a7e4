"""``aiosite serve``: the production server (gunicorn with aiohttp's workers)."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from aiosite.cli.context import CliState
from aiosite.cli.insecure import refuse_insecure
from aiosite.exceptions import AiositeError, CommandError
from aiosite.server import production
from aiosite.server.dev import describe_error
from aiosite.server.forked import call_in_child
from aiosite.server.pidfile import master_pid, reload_workers
from aiosite.settings import Settings
from aiosite.settings.sections import ServerSettings, check_access_log_format
from aiosite.site import create_site

DEFAULT_ENV = "production"


def register(cli: typer.Typer) -> None:
    cli.command("serve")(serve)


@dataclass(frozen=True)
class Checked:
    """What the master needs of the settings it checked (in a child: see forked.py)."""

    server: ServerSettings
    site_name: str
    log_level: str
    metrics_dir: Path | None


def serve(
    ctx: typer.Context,
    workers: Annotated[
        int | None,
        typer.Option(help="Worker processes; 0: one per CPU (default: server.workers).", min=0),
    ] = None,
    bind: Annotated[
        list[str] | None,
        typer.Option(
            help="Address to listen on, HOST:PORT or unix:PATH; repeat for several "
            "(default: server.bind, else server.host:server.port).",
        ),
    ] = None,
    timeout: Annotated[
        int | None,
        typer.Option(
            help="Seconds a worker may stay unresponsive before it is replaced "
            "(default: server.worker_timeout).",
            min=1,
        ),
    ] = None,
    graceful_timeout: Annotated[
        int | None,
        typer.Option(
            help="Seconds requests in flight get to finish when workers stop "
            "(default: server.graceful_timeout).",
            min=1,
        ),
    ] = None,
    max_requests: Annotated[
        int | None,
        typer.Option(
            help="Replace a worker after this many requests; 0: never "
            "(default: server.max_requests).",
            min=0,
        ),
    ] = None,
    max_requests_jitter: Annotated[
        int | None,
        typer.Option(
            help="Up to this many more requests, at random, per worker "
            "(default: server.max_requests_jitter).",
            min=0,
        ),
    ] = None,
    access_log: Annotated[
        bool | None,
        typer.Option(
            "--access-log/--no-access-log",
            help="One log line a request (default: server.access_log).",
        ),
    ] = None,
    access_log_format: Annotated[
        str | None,
        typer.Option(
            help="The access log line in aiohttp's directives, e.g. "
            "'%a %t \"%r\" %s %b %Tf %{X-Request-ID}o' (default: server.access_log_format; "
            "unset, aiosite's line with the request id and milliseconds).",
        ),
    ] = None,
    pid: Annotated[
        Path | None,
        typer.Option(help="Write the server's process id here (default: server.pid_file)."),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Start even with debug on, a development secret key or no allowed hosts.",
        ),
    ] = False,
    reload: Annotated[
        bool,
        typer.Option(
            "--reload-workers",
            help="Tell the running server (found through its pid file) to replace its "
            "workers, after checking the project; then exit.",
        ),
    ] = False,
) -> None:
    """Serve the project in production: gunicorn's master and aiohttp workers.

    The environment is production unless --env or AIOSITE_ENV says otherwise. SIGTERM
    stops gracefully, SIGHUP replaces the workers (new code and config), a worker that
    dies is replaced.
    """
    state: CliState = ctx.obj
    if state.env is None:
        state.env = os.environ.get("AIOSITE_ENV") or DEFAULT_ENV
    project_dir = state.project_dir()
    if reload:
        if pid is not None:
            master_pid(pid)  # no server, no need to check the project
        # New workers that cannot start would stop the server: check the project first.
        checked = call_in_child(functools.partial(_check, state, insecure=True, metrics=False))
        pid_file = _pid_file(pid, checked.server, project_dir)
        if pid_file is None:
            raise CommandError(
                "--reload-workers finds the server through its pid file: set server.pid_file "
                "(or pass --pid PATH, as the server was started with)"
            )
        master = reload_workers(pid_file)
        typer.echo(
            f"aiosite: sent SIGHUP to the server (pid {master}): it starts new workers and "
            "stops the old ones once their requests are done"
        )
        return
    log_format = _log_format(access_log_format)
    checked = call_in_child(functools.partial(_check, state, insecure=insecure, metrics=True))
    server = checked.server
    options = production.ServeOptions(
        project_dir=project_dir,
        env=state.env,
        site_name=checked.site_name,
        bind=tuple(production.project_address(a, Path.cwd()) for a in bind)
        if bind
        else production.addresses(server, project_dir),
        workers=server.workers if workers is None else workers,
        worker_timeout=timeout or server.worker_timeout,
        graceful_timeout=graceful_timeout or server.graceful_timeout,
        max_requests=server.max_requests if max_requests is None else max_requests,
        max_requests_jitter=(
            server.max_requests_jitter if max_requests_jitter is None else max_requests_jitter
        ),
        pid_file=_pid_file(pid, server, project_dir),
        access_log=access_log,
        access_log_format=log_format,
        log_level=checked.log_level,
        metrics_dir=checked.metrics_dir,
        drain_timeout=server.drain_timeout,
    )
    typer.echo(_banner(options), err=True)
    production.serve(options)


def _log_format(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return check_access_log_format(value)
    except ValueError as exc:
        raise CommandError(f"--access-log-format: {exc}") from None


def _check(state: CliState, *, insecure: bool, metrics: bool) -> Checked:
    """Load the settings and build the site, as each worker will (run in a child)."""
    settings = state.settings()
    if not insecure:
        refuse_insecure(settings)
    try:
        create_site(settings)
    except AiositeError:
        raise
    except Exception as exc:
        raise CommandError(describe_error(exc, settings.project_dir)) from None
    return Checked(
        server=settings.server,
        site_name=settings.site.name,
        log_level=settings.logging.level,
        metrics_dir=_metrics_dir(settings) if metrics else None,
    )


def _metrics_dir(settings: Settings) -> Path:
    """``metrics.multiprocess_dir``, in which the master (not this checking child) makes
    the directory of its own workers' metrics."""
    from aiosite.metrics import multiprocess_root

    return multiprocess_root(settings)


def _pid_file(flag: Path | None, server: ServerSettings, project_dir: Path) -> Path | None:
    if flag is not None:
        return flag.resolve()
    if server.pid_file is None:
        return None
    return project_dir / server.pid_file


def _banner(options: production.ServeOptions) -> str:
    shown = ", ".join(
        a if a.startswith(production.UNIX_PREFIX) else f"http://{a}/" for a in options.bind
    )
    count = production.worker_count(options.workers)
    loop = "uvloop" if "UVLoop" in production.worker_class() else "asyncio"
    return (
        f"aiosite: serving {options.site_name!r} ({options.env}) on {shown} with {count} "
        f"worker(s) ({loop}); SIGTERM stops, SIGHUP replaces the workers"
    )
