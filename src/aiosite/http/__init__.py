"""Managed outbound HTTP (docs/http-client.md): the site's one ``aiohttp.ClientSession``
and the named upstream services of the ``http:`` settings.

::

    resp = await service(request, "weather").get("/v1/today", params={"city": city})
    data = resp.json()

The client is made when the site starts and closed when it stops, with the connection
limits and timeouts of the settings. A call to a service is retried while that is safe
(stamina), fails fast while the service is down (purgatory's circuit breaker), and
carries the request's ``X-Request-ID``; a failure a handler lets escape is answered 502,
503 or 504, never 500. ``gather_upstreams`` calls several at once under one deadline.

A site that calls no upstream pays nothing per request: the battery adds no request
hook, and imports stamina and purgatory only when the site has services.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import ClientMiddlewareType, web

from aiosite.apps import AppRegistry
from aiosite.battery import Battery
from aiosite.hooks import hooks_of
from aiosite.http.calls import Service, service
from aiosite.http.client import HTTP_CLIENT, http_client, make_client
from aiosite.http.config import (
    BackoffSettings,
    BreakerSettings,
    HttpSettings,
    ServiceSettings,
    TimeoutSettings,
)
from aiosite.http.errors import (
    CircuitOpen,
    OutboundRequestBlocked,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from aiosite.http.gather import Gathered, gather_upstreams
from aiosite.http.guard import is_loopback, outbound_guard
from aiosite.http.pages import add_exception_handlers
from aiosite.http.registry import SERVICES, Services
from aiosite.http.response import UpstreamResponse
from aiosite.keys import REQUEST_ID_HEADER
from aiosite.settings import Settings


def _attach(app: web.Application, settings: Settings, registry: AppRegistry) -> None:
    http = settings.section(HttpSettings)
    services = app[SERVICES] = Services(http)
    add_exception_handlers(hooks_of(app))

    async def client_ctx(app: web.Application) -> AsyncIterator[None]:
        middlewares: tuple[ClientMiddlewareType, ...] = ()
        if http.outbound == "loopback":
            middlewares = (outbound_guard(services.configured),)
        services.open(middlewares)
        app[HTTP_CLIENT] = client = make_client(http, middlewares)
        try:
            yield
        finally:
            await client.close()

    app.cleanup_ctx.append(client_ctx)


battery = Battery("aiosite.http", _attach, {"http": HttpSettings})
setup = battery.setup

__all__ = [
    "HTTP_CLIENT",
    "REQUEST_ID_HEADER",
    "SERVICES",
    "BackoffSettings",
    "BreakerSettings",
    "CircuitOpen",
    "Gathered",
    "HttpSettings",
    "OutboundRequestBlocked",
    "Service",
    "ServiceSettings",
    "Services",
    "TimeoutSettings",
    "UpstreamError",
    "UpstreamResponse",
    "UpstreamStatusError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "battery",
    "gather_upstreams",
    "http_client",
    "is_loopback",
    "service",
    "setup",
]
