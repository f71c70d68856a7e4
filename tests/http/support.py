"""Upstream servers on loopback ports, and a site whose routes call them as services."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from tests.conftest import ProjectFactory

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Retries as the settings make them, with waits short enough for tests.
FAST_BACKOFF = {"initial": 0.01, "max": 0.05, "jitter": 0.01}

ROUTES = """\
from aiohttp import web

from aiosite import (
    Routes,
    UpstreamError,
    csrf_exempt,
    gather_upstreams,
    http_client,
    json_response,
    service,
)

routes = Routes()


async def _forward(request: web.Request, method: str, **options: object) -> web.Response:
    name = request.query.get("service", "weather")
    path = request.query.get("path", "/today")
    resp = await service(request, name).request(method, path, **options)
    return json_response({"status": resp.status, "body": resp.json()}, status=200)


@routes.get("/call", name="call")
async def call(request: web.Request) -> web.Response:
    return await _forward(request, "GET", params={"city": request.query.get("city", "Oslo")})


@routes.get("/api/call", name="api_call", api=True)
async def api_call(request: web.Request) -> web.Response:
    return await _forward(request, "GET")


@routes.post("/call", name="post_call")
@csrf_exempt
async def post_call(request: web.Request) -> web.Response:
    idempotent = {"1": True, "0": False}.get(request.query.get("idempotent", ""))
    return await _forward(request, "POST", json={"n": 1}, idempotent=idempotent)


@routes.get("/fast", name="fast")
async def fast(request: web.Request) -> web.Response:
    return web.Response(text="fast")


@routes.get("/raw", name="raw")
async def raw(request: web.Request) -> web.Response:
    async with http_client(request).get(request.query["url"]) as resp:
        return web.Response(text=await resp.text())


async def _json(request: web.Request, name: str) -> object:
    return (await service(request, name).get("/today")).json()


@routes.get("/both", name="both")
async def both(request: web.Request) -> web.Response:
    gathered = await gather_upstreams(
        request,
        {
            "weather": lambda: _json(request, "weather"),
            "news": _json(request, "news"),
        },
        deadline=float(request.query.get("deadline", "2")),
        partial=request.query.get("partial", "1") == "1",
    )
    return json_response(gathered.as_json())


@routes.get("/caught", name="caught")
async def caught(request: web.Request) -> web.Response:
    try:
        await service(request, "weather").get("/today")
    except UpstreamError as exc:
        return web.Response(text=f"{type(exc).__name__} {exc.status}")
    return web.Response(text="no error")
"""


class Upstream:
    """A real HTTP server on a free loopback port, counting the requests it gets."""

    def __init__(self, handler: Handler) -> None:
        self.hits = 0
        self.url = ""
        self.requests: list[web.Request] = []
        self._handler = handler
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._serve)
        self.server = TestServer(app, host="127.0.0.1")

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        self.requests.append(request)
        return await self._handler(request)

    async def start(self) -> None:
        await self.server.start_server()
        self.url = str(URL.build(scheme="http", host="127.0.0.1", port=self.server.port))


@contextlib.asynccontextmanager
async def upstream(handler: Handler) -> AsyncIterator[Upstream]:
    server = Upstream(handler)
    await server.start()
    try:
        yield server
    finally:
        await server.server.close()


async def echo(request: web.Request) -> web.Response:
    """What the upstream received: the site's request id, agent, path and query."""
    return web.json_response(
        {
            "request_id": request.headers.get("X-Request-ID"),
            "user_agent": request.headers.get("User-Agent"),
            "path": request.path,
            "query": dict(request.query),
            "api_key": request.headers.get("X-Api-Key"),
        }
    )


def status(code: int, **headers: str) -> Handler:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"error": code}, status=code, headers=headers)

    return answer


def sleeping(seconds: float) -> Handler:
    async def answer(request: web.Request) -> web.Response:
        await asyncio.sleep(seconds)
        return web.json_response({"slept": seconds})

    return answer


def failing_first(times: int, code: int = 503) -> Handler:
    """Fails ``times`` times with ``code``, then echoes."""
    count = 0

    async def answer(request: web.Request) -> web.StreamResponse:
        nonlocal count
        count += 1
        if count <= times:
            return web.json_response({"error": code}, status=code)
        return await echo(request)

    return answer


def refused_url() -> str:
    """A loopback URL on which nothing listens: a port that was bound, then closed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def site_project(make_project: ProjectFactory, http: dict[str, Any]) -> Path:
    """A project with the routes above and ``http`` as its test settings' section."""
    return make_project(
        files={
            "PKG/proxy/__init__.py": 'from aiosite import App\n\napp = App("proxy", prefix="")\n',
            "PKG/proxy/routes.py": ROUTES,
        },
        apps=["proxy"],
        with_home=False,
        env_yaml={"test": yaml.safe_dump({"http": http})},
    )


def services(**named: dict[str, Any]) -> dict[str, Any]:
    """``http.services`` with fast backoff for each."""
    return {name: {"backoff": FAST_BACKOFF, **settings} for name, settings in named.items()}
