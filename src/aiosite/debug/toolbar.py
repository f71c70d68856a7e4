"""aiohttp-debugtoolbar, on in debug mode when the package is installed.

The toolbar (0.6.1, verified with aiohttp 3.14) injects a button into every HTML page a
local client gets and serves its panels under ``/_debugtoolbar``. It is configured to
leave exceptions and redirects alone: aiosite's own debug 500 page shows exceptions,
and a redirect should behave in development as it will in production.

Its middleware runs as a handler wrapper of the core instead of a middleware of the
application, and the core wraps its routes like any other: the toolbar leaves the core
in the mode it runs in production.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import platform
import warnings
from typing import Any

from aiohttp import web

from aiosite.hooks import hooks_of
from aiosite.settings import Settings

logger = logging.getLogger("aiosite.debug")

PATH_PREFIX = "/_debugtoolbar"
# The name of the route that serves the site's static files (aiosite.web.static).
STATIC_ROUTE = "static"


def available() -> bool:
    return importlib.util.find_spec("aiohttp_debugtoolbar") is not None


def setup(app: web.Application, settings: Settings) -> None:
    """Set the toolbar up when debugging with the toolbar on and the package installed."""
    if not (settings.debug.enabled and settings.debug.toolbar):
        return
    if not available():
        logger.info("debug toolbar off: pip install 'aiosite[debug]' to get it")
        return
    import aiohttp_debugtoolbar

    # 0.6.1 stores per-request state under string keys, which aiohttp 3.14 warns about
    # on every request (and turns into errors under -W error); the warning is about the
    # toolbar's code, not the user's.
    warnings.filterwarnings(
        "ignore", category=web.NotAppKeyWarning, module=r"aiohttp_debugtoolbar(\.|$)"
    )
    # Static files are never HTML pages; keep them out of the request history. Their
    # URL is read off the static files' route, which the web battery added before.
    static = app.router.named_resources().get(STATIC_ROUTE)
    excluded = (static.canonical.partition("{")[0],) if static is not None else ()
    aiohttp_debugtoolbar.setup(
        app,
        intercept_exc=False,
        intercept_redirects=False,
        exclude_prefixes=excluded,
        path_prefix=PATH_PREFIX,
    )
    # Outermost around the handler, as its middleware would be: it sees what the
    # handler answers (HTML it adds its button to) and what the handler raises.
    app.middlewares.remove(aiohttp_debugtoolbar.middleware)
    hooks_of(app).add_handler_wrapper(
        aiohttp_debugtoolbar.middleware, name="aiosite.debug_toolbar", before="*"
    )
    app.on_startup.append(_warm_versions_panel)


async def _warm_versions_panel(app: web.Application) -> None:
    # The Versions panel reads the metadata of every installed distribution the first
    # time a page is shown (a quarter of a second in a large virtualenv) and
    # platform.platform() runs `uname -p` in a subprocess: both on the event loop, both
    # cached for the process. Fill the caches in a thread before the first request.
    from aiohttp_debugtoolbar.panels.versions import VersionDebugPanel

    if VersionDebugPanel.packages is None:
        await asyncio.to_thread(_warm, VersionDebugPanel)


def _warm(panel: Any) -> None:
    panel.get_packages()
    platform.platform()
