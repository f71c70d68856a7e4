"""aiohttp-debugtoolbar, on in debug mode when the package is installed."""

from __future__ import annotations

import importlib.util
import logging

from aiohttp import web

from aiosite.settings import Settings

logger = logging.getLogger("aiosite.debug")


def available() -> bool:
    return importlib.util.find_spec("aiohttp_debugtoolbar") is not None


def setup(app: web.Application, settings: Settings) -> None:
    if not (settings.debug.enabled and settings.debug.toolbar):
        return
    if not available():
        logger.info("debug toolbar off: pip install 'aiosite[debug]' to get it")
        return
    import aiohttp_debugtoolbar

    # aiosite's own debug page shows exceptions; the toolbar shows everything else.
    aiohttp_debugtoolbar.setup(app, intercept_exc=False, intercept_redirects=False)
