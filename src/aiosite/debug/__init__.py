"""Development aids: the debug toolbar and the event-loop block detector."""

from __future__ import annotations

from aiohttp import web

from aiosite.debug import blocking, toolbar
from aiosite.settings import Settings


def setup(app: web.Application, settings: Settings) -> None:
    toolbar.setup(app, settings)
    blocking.setup(app, settings)
