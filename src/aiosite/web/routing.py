"""Route tables with names, and mounting them under app prefixes.

A ``Routes`` table reads like aiohttp's ``RouteTableDef``, plus names. The site mounts
every app's table on its one router (no sub-applications, so resolving a request costs
what it costs in plain aiohttp) under the app's prefix, naming each route
``<app>:<name>``; aiohttp's own router then reverses names to URLs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast, overload

from aiohttp import hdrs, web

from aiosite.apps import AppRegistry
from aiosite.battery import Battery
from aiosite.exceptions import ImproperlyConfigured
from aiosite.keys import TEMPLATE_GLOBALS, WEBSOCKET
from aiosite.settings import Settings
from aiosite.web.core import CORE
from aiosite.web.mounted import ROUTES, MountedRoute, RouteHandler, SiteRoutes
from aiosite.web.urls import URLS, UrlReverser, url_global

H = TypeVar("H", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class RouteDef:
    """One route of a table, before it is mounted."""

    method: str
    path: str
    handler: RouteHandler
    name: str | None = None
    api: bool | None = None
    websocket: bool = False
    kwargs: Mapping[str, Any] = field(default_factory=dict)


class Register(Protocol):
    """``routes.get`` and friends: a decorator, or a call that takes the handler."""

    @overload
    def __call__(
        self,
        path: str,
        handler: None = None,
        *,
        name: str | None = ...,
        api: bool | None = ...,
        **kwargs: Any,
    ) -> Callable[[H], H]: ...
    @overload
    def __call__(
        self,
        path: str,
        handler: H,
        *,
        name: str | None = ...,
        api: bool | None = ...,
        **kwargs: Any,
    ) -> H: ...


class _Verb:
    """Binds one HTTP method to ``Routes._register``, so each verb is a line, not a copy."""

    def __init__(self, method: str, *, websocket: bool = False) -> None:
        self.method = method
        self.websocket = websocket

    def __get__(self, routes: Routes, owner: type[Routes] | None = None) -> Register:
        def register(
            path: str,
            handler: Any = None,
            *,
            name: str | None = None,
            api: bool | None = None,
            **kwargs: Any,
        ) -> Any:
            return routes._register(self.method, path, handler, name, api, self.websocket, kwargs)

        return cast(Register, register)


class Routes(Sequence[RouteDef]):
    """An app's route table.

    Every method works as a decorator, ``@routes.get("/", name="index")``, or as a
    call with the handler, ``routes.get("/", views.index, name="index")``.
    """

    def __init__(self, *, api: bool = False) -> None:
        self.api = api
        self._defs: list[RouteDef] = []

    def __getitem__(self, index: Any) -> Any:
        return self._defs[index]

    def __len__(self) -> int:
        return len(self._defs)

    def __iter__(self) -> Iterator[RouteDef]:
        return iter(self._defs)

    def route(
        self,
        method: str,
        path: str,
        handler: Any = None,
        *,
        name: str | None = None,
        api: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        """Any method, e.g. ``@routes.route("OPTIONS", "/items", name="options")``."""
        return self._register(method.upper(), path, handler, name, api, False, kwargs)

    get = _Verb(hdrs.METH_GET)
    post = _Verb(hdrs.METH_POST)
    put = _Verb(hdrs.METH_PUT)
    patch = _Verb(hdrs.METH_PATCH)
    delete = _Verb(hdrs.METH_DELETE)
    # A class-based view (``aiohttp.web.View``): every method the class defines.
    view = _Verb(hdrs.METH_ANY)
    # A GET handler that upgrades with ``WebSocketResponse``.
    websocket = _Verb(hdrs.METH_GET, websocket=True)

    def _register(
        self,
        method: str,
        path: str,
        handler: Any,
        name: str | None,
        api: bool | None,
        websocket: bool,
        kwargs: dict[str, Any],
    ) -> Any:
        if not path.startswith("/"):
            raise ImproperlyConfigured(f"route path {path!r} must start with '/'")

        def register(func: H) -> H:
            self._defs.append(RouteDef(method, path, func, name, api, websocket, kwargs))
            return func

        return register if handler is None else register(handler)


def mount(
    app: web.Application, app_name: str, prefix: str, table: Routes, *, api: bool = False
) -> list[MountedRoute]:
    """Add ``table`` to ``app``'s router under ``prefix``, naming routes ``app_name:name``."""
    mounted = []
    router = app.router
    core = app[CORE]
    for route in table:
        path = prefix + route.path
        _check_handler(app_name, route.method, path, route.handler)
        full_name = f"{app_name}:{route.name}" if route.name else None
        handler = core.wrap(route.handler)
        if route.websocket:
            # On the endpoint, not the user's function: the security battery's origin
            # check is settled onto the routes that carry it (hooks' routes=).
            setattr(handler, WEBSOCKET, True)
        try:
            if route.method == hdrs.METH_GET and not route.websocket:
                added = router.add_get(path, handler, name=full_name, **route.kwargs)
            else:
                added = router.add_route(
                    route.method, path, handler, name=full_name, **route.kwargs
                )
        except (ValueError, RuntimeError) as exc:
            raise ImproperlyConfigured(
                f"app {app_name!r}: cannot add route {route.method} {path} "
                f"(name {full_name!r}): {exc}"
            ) from None
        is_api = table.api or api if route.api is None else route.api
        mounted.append(
            MountedRoute(
                route.method,
                path,
                full_name,
                route.handler,
                app_name,
                is_api,
                route.websocket,
                added.resource,
            )
        )
    return mounted


def _check_handler(app_name: str, method: str, path: str, handler: object) -> None:
    if isinstance(handler, type):
        if not issubclass(handler, web.View):
            raise ImproperlyConfigured(
                f"app {app_name!r}: route {method} {path}: {handler.__qualname__} is a class "
                "but not an aiohttp web.View"
            )
    elif not inspect.iscoroutinefunction(handler):
        name = getattr(handler, "__qualname__", repr(handler))
        raise ImproperlyConfigured(
            f"app {app_name!r}: route {method} {path}: handler {name} must be an `async def` "
            "function"
        )


def mount_apps(app: web.Application, registry: AppRegistry) -> SiteRoutes:
    """Mount every app's route table under its prefix; what was mounted, for error pages."""
    mounted: list[MountedRoute] = []
    api_prefixes = []
    for loaded in registry:
        module = loaded.routes_module
        if module is None:
            continue
        table = getattr(module, "routes", None)
        if not isinstance(table, Routes):
            raise ImproperlyConfigured(
                f"apps: {loaded.package}.routes must define `routes = Routes()`"
            )
        mounted.extend(
            mount(app, loaded.name, loaded.config.url_prefix, table, api=loaded.config.api)
        )
        if (loaded.config.api or table.api) and loaded.config.url_prefix:
            api_prefixes.append(loaded.config.url_prefix)
    api_by_resource = {r.resource: r.api for r in mounted if r.resource is not None}
    return SiteRoutes(tuple(mounted), api_by_resource, tuple(api_prefixes))


def _attach(app: web.Application, settings: Settings, registry: AppRegistry) -> None:
    app[URLS] = UrlReverser(app.router)
    app[ROUTES] = mount_apps(app, registry)
    template_globals = app.get(TEMPLATE_GLOBALS)
    if template_globals is not None:
        # An app's own template_globals win (a project may bring its own url()).
        template_globals.setdefault("url", url_global)


battery = Battery("aiosite.routing", _attach)
setup = battery.setup
