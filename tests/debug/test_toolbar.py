"""The debug toolbar: injected into HTML pages in debug mode, absent otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from aiosite import load_site

PAGE_ROUTES = """\
from aiohttp import web

from aiosite import Routes

routes = Routes()


@routes.get("/page", name="page")
async def page(request: web.Request) -> web.Response:
    html = "<html><head><title>t</title></head><body><p>hi</p></body></html>"
    return web.Response(text=html, content_type="text/html")


@routes.get("/boom", name="boom")
async def boom(request: web.Request) -> web.Response:
    raise RuntimeError("kaboom")


@routes.get("/away", name="away")
async def away(request: web.Request) -> web.Response:
    raise web.HTTPFound("/page")
"""

TOOLBAR_BUTTON = 'id="pDebugToolbarHandle"'

# aiohttp warns about the toolbar's string request keys; aiosite silences exactly that.
pytestmark = pytest.mark.filterwarnings("error::aiohttp.web_exceptions.NotAppKeyWarning")


def project(make_project, **env_yaml: str) -> Path:
    root: Path = make_project({"PKG/home/routes.py": PAGE_ROUTES}, env_yaml=env_yaml)
    return root


async def test_toolbar_injected_and_served_in_debug_mode(make_project) -> None:
    site = load_site(project(make_project), "development")
    async with TestClient(TestServer(site)) as client:
        resp = await client.get("/page")
        assert resp.status == 200
        body = await resp.text()
        assert body.startswith("<html><head><title>t</title>")
        assert "/_debugtoolbar/static/css/toolbar_button.css" in body
        assert TOOLBAR_BUTTON in body
        assert body.index(TOOLBAR_BUTTON) < body.index("</body>")

        resp = await client.get("/static/home/site.css")
        assert resp.status == 200
        assert TOOLBAR_BUTTON not in await resp.text()

        resp = await client.get("/_debugtoolbar")
        assert resp.status == 200
        assert "Aiohttp Debug Toolbar" in await resp.text()
        resp = await client.get("/_debugtoolbar/static/css/toolbar.css")
        assert resp.status == 200
        # The request history lists pages, not static files.
        resp = await client.get("/_debugtoolbar/sse")
        history = await resp.text()
        assert '"/page"' in history
        assert "site.css" not in history


async def test_exceptions_and_redirects_are_left_to_aiosite(make_project) -> None:
    site = load_site(project(make_project), "development")
    async with TestClient(TestServer(site)) as client:
        resp = await client.get("/boom")
        assert resp.status == 500
        body = await resp.text()
        assert "RuntimeError" in body
        assert "kaboom" in body
        # aiosite's debug page, neither the toolbar's traceback page nor its button
        assert 'href="/_debugtoolbar' not in body
        assert TOOLBAR_BUTTON not in body

        resp = await client.get("/away", allow_redirects=False)
        assert resp.status == 302
        assert resp.headers["Location"] == "/page"


@pytest.mark.parametrize(
    ("env", "env_yaml"),
    [
        ("test", "{}\n"),
        ("production", "security:\n  secret_key: " + "production-key-" * 4 + "\n"),
        ("development", "debug:\n  enabled: true\n  toolbar: false\n"),
    ],
)
async def test_toolbar_absent(make_project, env: str, env_yaml: str) -> None:
    site = load_site(project(make_project, **{env: env_yaml}), env)
    async with TestClient(TestServer(site)) as client:
        resp = await client.get("/page")
        assert resp.status == 200
        body = await resp.text()
        assert body == "<html><head><title>t</title></head><body><p>hi</p></body></html>"
        resp = await client.get("/_debugtoolbar")
        assert resp.status == 404


async def test_versions_panel_is_warmed_off_the_loop_at_startup(make_project) -> None:
    from aiohttp_debugtoolbar.panels.versions import VersionDebugPanel

    # Its first use reads every installed distribution's metadata; aiosite does that in
    # a thread at startup, so that the first page does not block the event loop.
    VersionDebugPanel.packages = None
    site = load_site(project(make_project), "development")
    async with TestClient(TestServer(site)):
        assert VersionDebugPanel.packages
