"""Fake upstreams for tests: a small aiohttp server on a free loopback port that a named
service of the site calls instead of the real one, without editing the settings::

    async def weather(request: web.Request) -> web.Response:
        return web.json_response({"city": request.query["city"], "sky": "clear"})


    async def test_today(site, client):
        async with fake_upstream(site, "weather", weather):
            resp = await client.get("/today?city=Oslo")
        assert resp.status == 200

A site built for tests sends nothing beyond loopback (``http.outbound: loopback``,
which the pytest plugin sets): a call to a service that has no fake fails at once,
with a message that says how to add one.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from aiosite.http import SERVICES, HttpSettings
from aiosite.settings import Settings

FakeHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class FakeUpstream:
    """A running fake: the service it stands for and where it listens."""

    name: str
    url: URL
    server: TestServer


@contextlib.asynccontextmanager
async def fake_upstream(
    site: web.Application | TestClient[Any, Any],
    name: str,
    upstream: web.Application | FakeHandler,
) -> AsyncIterator[FakeUpstream]:
    """Serve the service ``name`` of ``site`` (the application, or a test client on it)
    from ``upstream`` while the block runs: an aiohttp application, or one handler that
    answers every method and path. The service keeps its own timeouts, retries and
    circuit breaker; only its base URL changes. A name the settings do not list gets the
    site's defaults."""
    app = site.app if isinstance(site, TestClient) else site
    services = app.get(SERVICES)
    if services is None:
        raise RuntimeError("fake_upstream: the site has no aiosite.http battery")
    if not isinstance(upstream, web.Application):
        upstream = _serving(upstream)
    server = TestServer(upstream, host="127.0.0.1")
    await server.start_server()
    url = URL.build(scheme="http", host="127.0.0.1", port=server.port)
    services.add_fake(name, url)
    try:
        yield FakeUpstream(name, url, server)
    finally:
        services.remove_fake(name, url)
        await server.close()


def _serving(handler: FakeHandler) -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{path:.*}", handler)
    return app


def outbound_to_loopback(settings: Settings) -> Settings:
    """``settings`` with ``http.outbound: loopback``, unless they set ``outbound``
    themselves (a test run that means to reach a real sandbox)."""
    http = settings.section(HttpSettings)
    if "outbound" in http.model_fields_set:
        return settings
    guarded = http.model_copy(update={"outbound": "loopback"})
    return settings.model_copy(update={"http": guarded})
