"""The routes and templates the session tests' projects share."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable
from pathlib import Path

from aiosite.db.models import Model

# /redis-id shows the id Redis gives the sessions client's pooled connection (requests
# one at a time share one connection).
ROUTES = """\
import aiohttp_session
import redis.asyncio
from aiohttp import web

from aiosite import Routes, render
from aiosite.sessions import SESSION_STORE, flash, get_session, rotate_session

routes = Routes()


@routes.get("/count", name="count")
async def count(request: web.Request) -> web.Response:
    session = await get_session(request)
    session["n"] = session.get("n", 0) + 1
    return web.Response(text=str(session["n"]))


@routes.get("/peek", name="peek")
async def peek(request: web.Request) -> web.Response:
    # aiohttp-session's own API sees the same session.
    session = await aiohttp_session.get_session(request)
    return web.Response(text=str(session.get("n", 0)))


@routes.get("/plain", name="plain")
async def plain(request: web.Request) -> web.Response:
    return web.Response(text="no session here")


@routes.get("/rotate", name="rotate")
async def rotate(request: web.Request) -> web.Response:
    session = await rotate_session(request)
    return web.Response(text=str(session.get("n", 0)))


@routes.get("/forget", name="forget")
async def forget(request: web.Request) -> web.Response:
    (await get_session(request)).invalidate()
    return web.Response(text="forgotten")


@routes.get("/flash", name="flash")
async def add_flash(request: web.Request) -> web.Response:
    await flash(request, "Saved <b>it</b>.", "success")
    raise web.HTTPSeeOther("/show")


@routes.get("/show", name="show")
async def show(request: web.Request) -> web.Response:
    return await render(request, "home/flashes.html")


@routes.get("/redis-id", name="redis_id")
async def redis_id(request: web.Request) -> web.Response:
    client = request.config_dict[SESSION_STORE].client
    assert client is not None
    return web.Response(text=str(await client.client_id()))


@routes.get("/own-redis", name="own_redis")
async def own_redis(request: web.Request) -> web.Response:
    # A Redis client of the site's own code, not the sessions'.
    client = redis.asyncio.Redis(port=int(request.query["port"]))
    try:
        return web.Response(text=str(await client.get("x")))
    finally:
        await client.aclose()
"""

FLASHES = """\
<ul>{% for category, message in flashed_messages() %}
<li class="{{ category }}">{{ message }}</li>
{% endfor %}</ul>
"""

AUTH_PACKAGE = "aiosite.contrib.auth"


def session_project(
    make_project: Callable[..., Path],
    test_yaml: str = "",
    *,
    files: dict[str, str] | None = None,
    default_yaml: str | None = None,
) -> Path:
    """A project with the routes above, its own secret key and ``test_yaml`` after it."""
    key = "k" * 8 + uuid.uuid4().hex
    return make_project(
        {"PKG/home/routes.py": ROUTES, "PKG/home/templates/home/flashes.html": FLASHES}
        | (files or {}),
        default_yaml=default_yaml,
        env_yaml={"test": f"security:\n  secret_key: {key}\n{test_yaml}"},
    )


def forget_stale_auth_app() -> None:
    """Have the next site import aiosite.contrib.auth afresh when an earlier test
    project's teardown disposed of its models (as tests/contrib/auth/conftest.py does)."""
    if AUTH_PACKAGE + ".models" in sys.modules and "auth_user" not in Model.metadata.tables:
        for name in list(sys.modules):
            if name == AUTH_PACKAGE or name.startswith(AUTH_PACKAGE + "."):
                del sys.modules[name]
