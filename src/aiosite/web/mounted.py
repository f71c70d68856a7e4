"""What the site mounted: every route with its app, name and API flag.

Read by the error pages (an API route's errors are JSON), ``aiosite routes`` and the
checks; filled in by ``aiosite.web.routing`` when it mounts the apps' route tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler

RouteHandler = Handler | type[web.View]


@dataclass(frozen=True, slots=True)
class MountedRoute:
    """A route as the site serves it: for ``aiosite routes``, checks and error pages."""

    method: str
    path: str
    name: str | None
    handler: RouteHandler
    app: str
    api: bool
    websocket: bool
    resource: web.AbstractResource | None


@dataclass(frozen=True, slots=True)
class SiteRoutes:
    """What the site mounted, for error pages, checks and ``aiosite routes``."""

    mounted: tuple[MountedRoute, ...]
    # Whether each mounted resource answers errors in JSON; a route's own `api=`
    # wins over its table's and its app's.
    api_by_resource: Mapping[web.AbstractResource, bool]
    # Prefixes of API apps, for requests that matched no route (404, 405).
    api_prefixes: tuple[str, ...]

    def is_api(self, request: web.Request) -> bool:
        resource = request.match_info.route.resource
        if resource is not None:
            api = self.api_by_resource.get(resource)
            if api is not None:
                return api
        path = request.path
        return any(path == prefix or path.startswith(prefix + "/") for prefix in self.api_prefixes)


ROUTES: web.AppKey[SiteRoutes] = web.AppKey("aiosite.routes", SiteRoutes)
