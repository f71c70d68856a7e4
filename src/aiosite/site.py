"""The one assembly point: settings in, ``aiohttp.web.Application`` out."""

from __future__ import annotations

import sys
from pathlib import Path

from aiohttp import web

from aiosite import debug
from aiosite.apps import AppRegistry, load_apps
from aiosite.exceptions import ImproperlyConfigured
from aiosite.keys import APPS, ROUTES, SETTINGS
from aiosite.settings import Settings, load_settings
from aiosite.web import routing, static, templates
from aiosite.web.errors import SiteRoutes, core_middleware


def create_site(settings: Settings) -> web.Application:
    """Build the site's application: apps, routes, templates, static files, error pages.

    Everything is attached here, before the application starts; aiohttp freezes it at
    startup, after which nothing adds routes, keys or middlewares.
    """
    ensure_importable(settings.project_dir)
    registry = load_apps(settings)
    middlewares = [core_middleware(), *registry.project.middlewares]
    app = web.Application(middlewares=middlewares, client_max_size=settings.server.client_max_size)
    app[SETTINGS] = settings
    app[APPS] = registry
    routing.setup(app)
    templates.setup(app, settings, registry)
    app[ROUTES] = _mount_apps(app, registry)
    static.setup(app, settings, registry)
    debug.setup(app, settings)
    for loaded in registry:
        if loaded.config.setup is not None:
            loaded.config.setup(app)
    if registry.project.setup is not None:
        registry.project.setup(app)
    return app


def load_site(project_dir: Path | str, env: str | None = None) -> web.Application:
    """Read the project's settings for ``env`` and build its site."""
    return create_site(load_settings(project_dir, env))


def ensure_importable(project_dir: Path) -> None:
    """Put the project directory on ``sys.path`` so its package and apps import."""
    path = str(project_dir)
    if path not in sys.path:
        sys.path.insert(0, path)


def _mount_apps(app: web.Application, registry: AppRegistry) -> SiteRoutes:
    mounted: list[routing.MountedRoute] = []
    api_prefixes = []
    for loaded in registry:
        module = loaded.routes_module
        if module is None:
            continue
        table = getattr(module, "routes", None)
        if not isinstance(table, routing.Routes):
            raise ImproperlyConfigured(
                f"apps: {loaded.package}.routes must define `routes = Routes()`"
            )
        mounted.extend(
            routing.mount(app, loaded.name, loaded.config.url_prefix, table, api=loaded.config.api)
        )
        if (loaded.config.api or table.api) and loaded.config.url_prefix:
            api_prefixes.append(loaded.config.url_prefix)
    api_by_resource = {r.resource: r.api for r in mounted if r.resource is not None}
    return SiteRoutes(tuple(mounted), api_by_resource, tuple(api_prefixes))
