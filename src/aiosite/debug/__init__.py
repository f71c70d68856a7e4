"""Development aids: the debug toolbar and the event-loop block detector."""

from __future__ import annotations

from aiohttp import web

from aiosite.apps import AppRegistry
from aiosite.battery import Battery
from aiosite.debug import blocking, toolbar
from aiosite.settings import Settings


def _attach(app: web.Application, settings: Settings, registry: AppRegistry) -> None:
    toolbar.setup(app, settings)
    blocking.setup(app, settings)


battery = Battery("aiosite.debug", _attach)
setup = battery.setup
