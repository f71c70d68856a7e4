"""The development server: one process, uvloop when installed, autoreload by watchfiles.

The server runs whatever site factory it is named by a dotted path (as gunicorn does),
and gets its logging set-up and access logger from the caller, so it depends on no part
of aiosite above it (import-linter checks this).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import functools
import gc
import importlib
import logging
import os
import signal
import socket
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from aiosite.exceptions import AiositeError, CommandError
from aiosite.server.protocol import ConnectionLimits, GuardedAppRunner
from aiosite.settings import Settings
from aiosite.site import load_settings

if TYPE_CHECKING:
    from watchfiles import Change

logger = logging.getLogger("aiosite.server")

SITE_FACTORY = "aiosite.site:create_site"
ACCESS_LOGGER = "aiosite.access"
# What autoreload watches (docs/dev-server.md): the project's Python files, the YAML files
# of config/ and every file under a templates/ folder; never these folders.
CONFIG_SUFFIXES = frozenset({".yaml", ".yml"})
UNWATCHED_DIRS = frozenset({"static", "__pycache__", "node_modules", "venv", "site-packages"})
# Browsers keep connections open; a restart must not wait for them long.
SHUTDOWN_TIMEOUT = 3.0

LoopName = Literal["auto", "uvloop", "asyncio"]


@dataclass(frozen=True)
class ServerConfig:
    """Everything a server process needs; picklable, so a reload child gets the same."""

    project_dir: Path
    env: str | None
    host: str
    port: int
    configure_logging: Callable[[Settings], None]
    access_log_class: type[AbstractAccessLogger]
    # The runner's access_log_format, for a class that takes one (server.access_log_format).
    access_log_format: str | None = None
    factory: str = SITE_FACTORY
    loop: LoopName = "auto"
    # None: follow the settings (server.access_log, or debug.enabled in development).
    access_log: bool | None = None
    reload: bool = False  # only changes the banner; run_with_reload does the reloading
    # Folders the reloader ignores besides UNWATCHED_DIRS (the media root of uploads).
    unwatched: tuple[Path, ...] = ()


def new_event_loop(name: LoopName = "auto") -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed (or asked for), asyncio's otherwise."""
    if name == "asyncio":
        return asyncio.new_event_loop()
    try:
        import uvloop
    except ImportError:
        if name == "uvloop":
            raise CommandError(
                "--loop uvloop: uvloop is not installed (pip install uvloop)"
            ) from None
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
            raise CommandError(bind_error(host, port, exc)) from None


def bind_error(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is already in use; stop the other server or pass --port"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host}: no such address on this machine; pass --host"
    if exc.errno == errno.EACCES:
        return f"no permission to listen on port {port}; use a port above 1023"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


def banner(settings: Settings, host: str, port: int, *, reload: bool) -> str:
    shown = f"[{host}]" if ":" in host else host
    extra = " with autoreload" if reload else ""
    return (
        f"aiosite: serving {settings.site.name!r} ({settings.env}) on "
        f"http://{shown}:{port}/{extra}; press Ctrl-C to quit"
    )


def access_log_wanted(settings: Settings, forced: bool | None) -> bool:
    if forced is not None:
        return forced
    return settings.server.access_log or settings.debug.enabled


def _factory(dotted: str) -> Callable[[Settings], web.Application]:
    module_name, _, attr = dotted.partition(":")
    factory: Callable[[Settings], web.Application] = getattr(
        importlib.import_module(module_name), attr
    )
    return factory


def serve(
    config: ServerConfig, *, show_banner: bool = True, settings: Settings | None = None
) -> None:
    """Load the settings, build the site and serve it until SIGINT or SIGTERM.

    ``settings`` are those of ``config`` when the caller has read them already (reading
    them again would add to the startup). Startup problems (settings, a broken app, a
    taken port) raise CommandError with one line; stopping is quiet and waits briefly for
    requests in flight.
    """
    if settings is None:
        settings = load_settings(config.project_dir, config.env)
    config.configure_logging(settings)
    if access_log_wanted(settings, config.access_log):
        logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO)
    loop_factory = functools.partial(new_event_loop, config.loop)
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=loop_factory) as run:
        run.run(_serve(config, settings, show_banner))


async def _serve(config: ServerConfig, settings: Settings, show_banner: bool) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    # Installed first, so that a Ctrl-C during startup also stops cleanly; repeated
    # signals (the terminal and the reloader both send one) just set the event again.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = GuardedAppRunner(
        build_app(config, settings),
        limits=ConnectionLimits.from_settings(settings),
        access_log_class=config.access_log_class,
        **(
            {}
            if config.access_log_format is None
            else {"access_log_format": config.access_log_format}
        ),
        access_log=logging.getLogger(ACCESS_LOGGER),
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        # No drain: browsers keep idle connections for minutes, and a restart would
        # wait for all of its time.
        drain_timeout=0.0,
    )
    try:
        await _start(runner, config, settings)
        # What startup built (modules, models, compiled templates and statements) lives
        # as long as the process: out of the collector's way, each full collection
        # walks only what requests allocate.
        gc.collect()
        gc.freeze()
        if show_banner:
            print(banner(settings, config.host, config.port, reload=config.reload), flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
            # Stopping already: a late second signal (the terminal's and the reloader's
            # both arrive) must not interrupt the shutdown with a KeyboardInterrupt.
            signal.signal(sig, signal.SIG_IGN)


def build_app(config: ServerConfig, settings: Settings) -> web.Application:
    try:
        return _factory(config.factory)(settings)
    except Exception as exc:
        raise CommandError(describe_error(exc, config.project_dir)) from None


async def _start(runner: web.AppRunner, config: ServerConfig, settings: Settings) -> None:
    try:
        await runner.setup()  # runs the site's on_startup / cleanup_ctx
    except Exception as exc:
        raise CommandError(
            "starting the site failed: " + describe_error(exc, config.project_dir)
        ) from None
    site = web.TCPSite(runner, config.host, config.port)
    try:
        await site.start()
    except OSError as exc:
        raise CommandError(bind_error(config.host, config.port, exc)) from None


def describe_error(exc: BaseException, project_dir: Path) -> str:
    """One line: the exception and where in the user's code it happened."""
    if isinstance(exc, AiositeError):
        # Ours already says what went wrong; add where, when a user's import failed.
        cause = exc.__cause__
        where = _location(cause, project_dir) if cause is not None else ""
        return f"{exc}{where}"
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}: SyntaxError: {exc.msg}"
    return f"{type(exc).__name__}: {exc}{_location(exc, project_dir)}"


def _location(exc: BaseException, project_dir: Path) -> str:
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" (at {exc.filename}:{exc.lineno})"
    frames = traceback.extract_tb(exc.__traceback__)
    root = str(project_dir)
    own = [f for f in frames if f.filename.startswith(root)] or frames
    return f" (at {own[-1].filename}:{own[-1].lineno})" if own else ""


# --- autoreload --------------------------------------------------------------------


def _serve_child(config: ServerConfig) -> None:
    # Runs in the process watchfiles (re)starts. Errors are printed as one line, not
    # raised, so that the watcher keeps waiting for the fix.
    first_start = os.environ.get("WATCHFILES_CHANGES", "[]") == "[]"
    try:
        serve(config, show_banner=first_start)
    except Exception as exc:
        _report(describe_error(exc, config.project_dir))
    except KeyboardInterrupt:
        pass
    finally:
        # The server has stopped; a late Ctrl-C must not print a traceback on exit.
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _report(error: object) -> None:
    print(f"error: {error}", file=sys.stderr, flush=True)
    print("aiosite: waiting for a change to restart", file=sys.stderr, flush=True)


def _watch_filter(root: Path, unwatched: tuple[Path, ...], change: Change, path: str) -> bool:
    """A change counts when it is to a ``.py`` file of the project, a YAML file of
    ``config/`` or a file in a ``templates/`` folder, and is in no static folder, no
    folder of ``unwatched`` (relative to ``root``, which is resolved: the media root), no
    hidden folder (only the parts below the project count: it may itself live in one,
    ~/.local/src/mysite), ``__pycache__``, ``node_modules`` or virtualenv. Static files
    are served as they are on disk and need no restart."""
    changed = Path(path)
    if not changed.is_relative_to(root):
        changed = changed.resolve()  # the project's path as given holds a symlink
        if not changed.is_relative_to(root):
            return False
    relative = changed.relative_to(root)
    if any(relative.is_relative_to(folder) for folder in unwatched):
        return False
    folders = relative.parts[:-1]
    if relative.name.startswith(".") or any(
        part.startswith(".") or part in UNWATCHED_DIRS for part in folders
    ):
        return False
    if relative.suffix == ".py":
        return True
    if folders == ("config",):
        return relative.suffix in CONFIG_SUFFIXES
    return "templates" in folders


def _on_changes(changes: set[tuple[Change, str]]) -> None:
    names = ", ".join(sorted({Path(p).name for _, p in changes}))
    print(
        f"aiosite: {len(changes)} change(s) ({names[:200]}), restarting",
        file=sys.stderr,
        flush=True,
    )


def run_with_reload(config: ServerConfig) -> None:
    """Serve in a child process and restart it whenever a watched file changes.

    The child prints the banner on its first start; the child gets this process's
    environment, sys.path and working directory (multiprocessing's spawn passes them).
    """
    import watchfiles

    check_port_free(config.host, config.port)
    # watchfiles' own chatter ("KeyboardInterrupt caught") adds nothing for the user.
    logging.getLogger("watchfiles").setLevel(logging.ERROR)
    config = dataclasses.replace(config, reload=True)
    root = config.project_dir.resolve()
    # Relative to the project: paths as watchfiles reports them may not be resolved.
    unwatched = tuple(
        path.resolve().relative_to(root)
        for path in config.unwatched
        if path.resolve().is_relative_to(root)
    )
    with contextlib.suppress(KeyboardInterrupt):
        watchfiles.run_process(
            config.project_dir,
            target=_serve_child,
            args=(config,),
            watch_filter=functools.partial(_watch_filter, root, unwatched),
            callback=_on_changes,
            sigint_timeout=int(SHUTDOWN_TIMEOUT) + 2,
        )
