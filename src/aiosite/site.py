"""The one assembly point: settings in, ``aiohttp.web.Application`` out."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from aiosite import db, debug, security, sessions, uploads
from aiosite.apps import load_apps
from aiosite.keys import APPS, CORE, ROUTES, SETTINGS
from aiosite.settings import Settings, load_settings
from aiosite.web import routing, static, templates
from aiosite.web.errors import Core


def create_site(settings: Settings) -> web.Application:
    """Build the site's application: apps, routes, templates, static files, error pages.

    Everything is attached here, before the application starts; aiohttp freezes it at
    startup, after which nothing adds routes, keys or middlewares.
    """
    # First: a public site without a secret key of its own stops here, before any battery
    # (the sessions' would otherwise make up a key and warn about it).
    security.refuse_public_site_without_secret_key(settings)
    registry = load_apps(settings)
    app = web.Application(
        middlewares=registry.project.middlewares, client_max_size=settings.server.client_max_size
    )
    app[CORE] = core = Core()
    app[SETTINGS] = settings
    app[APPS] = registry
    routing.setup(app)
    templates.setup(app, settings, registry)
    app[ROUTES] = routing.mount_apps(app, registry)
    static.setup(app, settings, registry)
    db.setup(app, settings)
    # Sessions before security: the CSRF check reads the session the sessions hook
    # attaches; security puts its allowed-hosts check ahead of every other hook.
    sessions.setup(app, settings)
    security.setup(app, settings)
    uploads.setup(app, settings)
    debug.setup(app, settings)
    for loaded in registry:
        if loaded.config.setup is not None:
            loaded.config.setup(app)
    if registry.project.setup is not None:
        registry.project.setup(app)
    # The mode is chosen at startup, once whatever else sets the application up has
    # added its routes and middlewares too.
    core.install(app)
    return app


def load_site(project_dir: Path | str, env: str | None = None) -> web.Application:
    """Read the project's settings for ``env`` and build its site."""
    return create_site(load_settings(project_dir, env))


__all__ = ["create_site", "load_site"]
