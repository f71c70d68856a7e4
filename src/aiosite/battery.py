"""The battery protocol: how a part of every site attaches itself to the application.

A battery (the request core, templates, the database, sessions, security...) is one
``Battery``: a name, the settings sections it owns, and a ``setup(app, settings,
registry)`` that attaches it before the application starts. ``aiosite.site`` assembles
every site from its ordered list of batteries, then runs each listed app's own
``App(setup=...)`` with the same arguments. A package that extends sites is an app
(docs/extending.md), so it needs no battery of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web

from aiosite.apps import AppRegistry
from aiosite.settings import Section, Settings

SetupFunction = Callable[[web.Application, Settings, AppRegistry], None]


@dataclass(frozen=True, slots=True)
class Battery:
    """One of aiosite's own parts: ``setup`` attaches it to an application."""

    name: str
    attach: SetupFunction
    # The settings sections it owns, by their key in the YAML files.
    sections: Mapping[str, type[Section]] = field(default_factory=dict)

    def setup(self, app: web.Application, settings: Settings, registry: AppRegistry) -> None:
        """Attach the battery; RuntimeError once ``app`` has started, since aiohttp froze
        it and what the battery adds (keys, routes, hooks) could no longer take effect."""
        if app.frozen:
            raise RuntimeError(
                f"{self.name}: the application has already started, so nothing can be "
                "attached to it; set it up while the site is assembled (create_site, or an "
                "app's setup(app, settings, registry))"
            )
        self.attach(app, settings, registry)
