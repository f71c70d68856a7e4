"""What each worker of ``aiosite serve`` runs after the fork: the project's settings, its
logging, its site, and the guarded runner aiohttp's gunicorn worker serves it with.

aiohttp's worker binds the runner to the sockets gunicorn's master opened. On SIGTERM it
stops accepting, runs the site's shutdown (websockets get 1001, event streams end)
while it drains its idle connections (``server.drain_timeout``), gives requests in
flight ``shutdown_timeout`` (drain included) to finish, then runs the site's cleanup.
"""

from __future__ import annotations

import gc
import logging
import sys
from pathlib import Path
from typing import Any, NoReturn

from aiohttp import web
from gunicorn.arbiter import Arbiter

from aiosite.server.dev import describe_error
from aiosite.server.production import ServeOptions
from aiosite.server.protocol import ConnectionLimits, GuardedAppRunner
from aiosite.site import create_site, load_settings
from aiosite.web.logs import ACCESS_LOGGER, access_log_options, configure_logging


class WorkerRunner(GuardedAppRunner):
    """The guarded runner, whose startup failure stops the worker with one line."""

    def __init__(self, app: web.Application, *, project_dir: Path, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.project_dir = project_dir

    async def setup(self) -> None:
        try:
            await super().setup()  # the site's on_startup and cleanup_ctx
        except Exception as exc:
            boot_failed("starting the site failed: " + describe_error(exc, self.project_dir))
        # What startup built lives as long as the worker: out of the collector's way (as
        # `aiosite run` does).
        gc.collect()
        gc.freeze()


async def site_runner(options: ServeOptions) -> GuardedAppRunner:
    """The runner of this worker's site (aiohttp's worker calls ``setup()`` on it)."""
    try:
        settings = load_settings(options.project_dir, options.env)
        configure_logging(settings)
        app = create_site(settings)
    except Exception as exc:
        boot_failed(describe_error(exc, options.project_dir))
    access_log = logging.getLogger(ACCESS_LOGGER)
    if options.access_log is not None:
        access_log.setLevel(logging.INFO if options.access_log else logging.WARNING)
    return WorkerRunner(
        app,
        project_dir=options.project_dir,
        limits=ConnectionLimits.from_settings(settings),
        access_log=access_log,
        **access_log_options(options.access_log_format or settings.server.access_log_format),
        shutdown_timeout=options.shutdown_timeout,
        drain_timeout=options.worker_drain_timeout,
    )


def boot_failed(line: str) -> NoReturn:
    """Stop the worker with ``line`` and the status that tells gunicorn's master that a
    worker cannot boot, so that it stops rather than forking failing workers forever."""
    print(f"error: {line}", file=sys.stderr, flush=True)
    sys.exit(Arbiter.WORKER_BOOT_ERROR)
