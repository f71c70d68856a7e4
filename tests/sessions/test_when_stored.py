"""A session is stored only once it holds something, and pages that read it are marked
personal for caches (``Vary: Cookie``, ``Cache-Control``)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from http.cookies import SimpleCookie
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from tests.conftest import REDIS_ADDRESS, require_service, site_client

ROUTES = """\
from aiohttp import web

from aiosite import Routes, render
from aiosite.sessions import flash, get_flashed_messages, get_session

routes = Routes()


@routes.get("/public", name="public")
async def public(request: web.Request) -> web.Response:
    return await render(request, "home/public.html")


@routes.get("/form", name="form")
async def form(request: web.Request) -> web.Response:
    return await render(request, "home/form.html")


@routes.post("/submit", name="submit")
async def submit(request: web.Request) -> web.Response:
    return web.Response(text=f"saved {(await request.post()).get('title', '')}")


@routes.get("/sign-in", name="sign_in")
async def sign_in(request: web.Request) -> web.Response:
    (await get_session(request))["user_id"] = 7
    return web.Response(text="signed in")


@routes.get("/account", name="account")
async def account(request: web.Request) -> web.Response:
    return await render(request, "home/form.html")


@routes.get("/own-cache", name="own_cache")
async def own_cache(request: web.Request) -> web.Response:
    await get_session(request)
    return web.Response(
        text="mine",
        headers={"Cache-Control": "no-cache", "Vary": "Accept-Encoding"},
    )


@routes.get("/varies", name="varies")
async def varies(request: web.Request) -> web.Response:
    await get_session(request)
    return web.Response(text="varies", headers={"Vary": "Accept-Language, cookie"})


@routes.get("/flash-now", name="flash_now")
async def flash_now(request: web.Request) -> web.Response:
    # Flashed and shown by the same request: the session ends up empty.
    await flash(request, "gone at once")
    shown = await get_flashed_messages(request)
    return web.Response(text=str(len(shown)))


@routes.get("/flash", name="flash")
async def add_flash(request: web.Request) -> web.Response:
    await flash(request, "Saved.", "success")
    raise web.HTTPSeeOther("/public")
"""

PUBLIC = """\
<ul>{% for category, message in flashed_messages() %}<li class="{{ category }}">{{ message }}</li>
{% endfor %}</ul><p>public</p>
"""
FORM = '<form method="post" action="/submit">{{ csrf_input() }}<input name="title"></form>\n'
FIELD = 'name="csrf_token" value="'


def _project(make_project: Callable[..., Path], extra_yaml: str = "") -> Path:
    files = {
        "PKG/home/routes.py": ROUTES,
        "PKG/home/templates/home/public.html": PUBLIC,
        "PKG/home/templates/home/form.html": FORM,
    }
    key = "k" * 8 + uuid.uuid4().hex
    return make_project(files, env_yaml={"test": f"security:\n  secret_key: {key}\n{extra_yaml}"})


def _set_cookies(response: aiohttp.ClientResponse) -> dict[str, str]:
    cookie: SimpleCookie = SimpleCookie()
    for header in response.headers.getall("Set-Cookie", []):
        cookie.load(header)
    return {name: morsel.value for name, morsel in cookie.items()}


def _token(page: str) -> str:
    start = page.index(FIELD) + len(FIELD)
    return page[start : page.index('"', start)]


@pytest.fixture
def prefix() -> str:
    require_service("Redis", *REDIS_ADDRESS)
    return f"aiosite-test-stored:{uuid.uuid4().hex[:12]}:"


async def _keys(prefix: str) -> list[bytes]:
    client = aioredis.Redis(host=REDIS_ADDRESS[0], port=REDIS_ADDRESS[1])
    try:
        return [key async for key in client.scan_iter(match=prefix + "*")]
    finally:
        await client.aclose()


async def _forget(prefix: str) -> None:
    keys = await _keys(prefix)
    if keys:
        client = aioredis.Redis(host=REDIS_ADDRESS[0], port=REDIS_ADDRESS[1])
        try:
            await client.delete(*keys)
        finally:
            await client.aclose()


def _redis_yaml(prefix: str) -> str:
    host, port = REDIS_ADDRESS
    return (
        f"redis:\n  url: redis://{host}:{port}/0\n"
        f"session:\n  backend: redis\n  redis_prefix: '{prefix}'\n"
    )


async def test_anonymous_page_views_store_no_session(
    make_project: Callable[..., Path], prefix: str
) -> None:
    root = _project(make_project, _redis_yaml(prefix))
    try:
        async with site_client(root) as client:
            session_cookies, csrf_cookies = set(), []
            for number in range(100):
                for path in ("/form", "/public"):
                    response = await client.get(path)
                    assert response.status == 200
                    made = _set_cookies(response)
                    if "aiosite_session" in made:
                        session_cookies.add(path)
                    if "aiosite_csrf" in made:
                        csrf_cookies.append((number, path))
            assert session_cookies == set()
            # The CSRF cookie is made once, by the first form, and kept.
            assert csrf_cookies == [(0, "/form")]
            assert await _keys(prefix) == []
            # The form still posts: its secret is in the CSRF cookie.
            token = _token(await (await client.get("/form")).text())
            response = await client.post("/submit", data={"title": "hi", "csrf_token": token})
            assert response.status == 200
            assert await response.text() == "saved hi"
            jar = {cookie.key for cookie in client.session.cookie_jar}
            assert jar == {"aiosite_csrf"}
            assert await _keys(prefix) == []
            # A session that holds data is stored, as before.
            await client.get("/sign-in")
            assert len(await _keys(prefix)) == 1
    finally:
        await _forget(prefix)


@pytest.mark.parametrize("backend", ["cookie", "redis"])
async def test_a_session_emptied_by_its_own_request_is_not_stored(
    make_project: Callable[..., Path], backend: str
) -> None:
    prefix = ""
    yaml = ""
    if backend == "redis":
        require_service("Redis", *REDIS_ADDRESS)
        prefix = f"aiosite-test-stored:{uuid.uuid4().hex[:12]}:"
        yaml = _redis_yaml(prefix)
    try:
        async with site_client(_project(make_project, yaml)) as client:
            response = await client.get("/flash-now")
            assert await response.text() == "1"
            assert "Set-Cookie" not in response.headers
            if backend == "redis":
                assert await _keys(prefix) == []
            # A stale session cookie the browser sends is deleted, never stored anew.
            response = await client.get("/flash-now", cookies={"aiosite_session": "z" * 43})
            assert _set_cookies(response) == {"aiosite_session": ""}
            if backend == "redis":
                assert await _keys(prefix) == []
    finally:
        if prefix:
            await _forget(prefix)


async def test_flash_messages_of_an_anonymous_visitor_in_redis(
    make_project: Callable[..., Path], prefix: str
) -> None:
    try:
        async with site_client(_project(make_project, _redis_yaml(prefix))) as client:
            page = await (await client.get("/flash")).text()  # follows the redirect
            assert '<li class="success">Saved.</li>' in page
            # Shown once; the session, empty again, is gone from Redis.
            assert "<li" not in await (await client.get("/public")).text()
            assert await _keys(prefix) == []
    finally:
        await _forget(prefix)


async def test_personal_pages_are_not_cached_for_others(
    make_project: Callable[..., Path],
) -> None:
    async with site_client(_project(make_project)) as client:
        # A page that never looked at the session stays cacheable.
        response = await client.get("/public")
        assert "Cache-Control" not in response.headers
        assert "Vary" not in response.headers
        # A form (a CSRF token for this visitor), anonymous: private.
        response = await client.get("/form")
        assert response.headers["Cache-Control"] == "private"
        assert response.headers["Vary"] == "Cookie"
        # The same page once the session holds data (a signed-in user): not stored either.
        await client.get("/sign-in")
        response = await client.get("/account")
        assert response.headers["Cache-Control"] == "private, no-store"
        assert response.headers["Vary"] == "Cookie"
        # A public page that shows flash messages reads the session of a visitor who has one.
        response = await client.get("/public")
        assert response.headers["Cache-Control"] == "private, no-store"
        # The handler's own Cache-Control is kept; Vary gains Cookie, once.
        response = await client.get("/own-cache")
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["Vary"] == "Accept-Encoding, Cookie"
        response = await client.get("/varies")
        assert response.headers["Vary"] == "Accept-Language, cookie"
        # Redirects that set the session are personal too.
        response = await client.get("/flash", allow_redirects=False)
        assert response.status == 303
        assert response.headers["Cache-Control"] == "private, no-store"
        assert response.headers["Vary"] == "Cookie"


async def test_the_cache_control_values_are_settings(make_project: Callable[..., Path]) -> None:
    yaml = (
        "session:\n  cache_control_without_data: 'private, max-age=60'\n"
        "  cache_control_with_data: null\n"
    )
    async with site_client(_project(make_project, yaml)) as client:
        response = await client.get("/form")
        assert response.headers["Cache-Control"] == "private, max-age=60"
        await client.get("/sign-in")
        response = await client.get("/account")
        assert "Cache-Control" not in response.headers
        assert response.headers["Vary"] == "Cookie"
