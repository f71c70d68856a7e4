"""The development server: one process, uvloop when installed, autoreload by watchfiles.

The server runs whatever site factory it is named by a dotted path (as gunicorn does),
so it depends on no part of aiosite above it.
"""

from __future__ import annotations

import asyncio
import errno
import importlib
import logging
import socket
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from aiosite.exceptions import CommandError
from aiosite.settings import Settings, load_settings
from aiosite.web.logs import AccessLogger, configure_logging

logger = logging.getLogger("aiosite.server")

SITE_FACTORY = "aiosite.site:create_site"
WATCHED_SUFFIXES = frozenset({".py", ".yaml", ".yml", ".html", ".jinja", ".jinja2", ".txt"})


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed, asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a default dependency on POSIX
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def check_port_free(host: str, port: int) -> None:
    """Fail with one clear line, before any work, when the address is taken."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise CommandError(_bind_error(host, port, exc)) from None


def _bind_error(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is already in use; stop the other server or pass --port"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host}: no such address on this machine; pass --host"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


def _factory(dotted: str) -> Callable[[Settings], web.Application]:
    module_name, _, attr = dotted.partition(":")
    factory: Callable[[Settings], web.Application] = getattr(
        importlib.import_module(module_name), attr
    )
    return factory


def serve(project_dir: Path, env: str | None, host: str, port: int,
          factory: str = SITE_FACTORY) -> None:
    """Load the settings, build the site and serve it until interrupted."""
    settings = load_settings(project_dir, env)
    configure_logging(settings)
    app = _factory(factory)(settings)
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        web.run_app(
            app, host=host, port=port, loop=loop, access_log_class=AccessLogger,
            access_log=logging.getLogger("aiosite.access"),
            print=lambda message: logger.warning(message.strip()),
            handle_signals=True,
        )
    except OSError as exc:
        raise CommandError(_bind_error(host, port, exc)) from None


def _serve_child(project_dir: str, env: str | None, host: str, port: int, factory: str) -> None:
    # Runs in the process watchfiles restarts; errors are printed, not raised, so
    # that the watcher keeps waiting for the fix.
    from aiosite.exceptions import AiositeError

    try:
        serve(Path(project_dir), env, host, port, factory)
    except AiositeError as exc:
        logger.error("%s", exc)
        print(f"error: {exc}", flush=True)  # noqa: T201 - the dev server's own terminal


def _watch_filter(change: object, path: str) -> bool:
    return Path(path).suffix in WATCHED_SUFFIXES and "/." not in path


def run_with_reload(project_dir: Path, env: str | None, host: str, port: int,
                    factory: str = SITE_FACTORY) -> None:
    """Serve in a child process and restart it whenever a watched file changes."""
    import watchfiles

    watchfiles.run_process(
        project_dir,
        target=_serve_child,
        args=(str(project_dir), env, host, port, factory),
        watch_filter=_watch_filter,
        callback=lambda changes: logger.warning(
            "%d change(s) detected, restarting: %s", len(changes),
            ", ".join(sorted({Path(p).name for _, p in changes}))[:200],
        ),
    )
