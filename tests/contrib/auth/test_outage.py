"""Error pages during a database outage: rendered from the site's templates for a user
shown as anonymous, with one warning in the log and no traceback; the user is still
logged in once the database is back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.conftest import ProjectFactory, TestDatabase, site_with_tables
from tests.contrib.auth.conftest import Browser, BrowserFactory, make_auth_project, make_user
from tests.db.proxy import TcpProxy

Client = TestClient[web.Request, web.Application]

# The site's own error pages, on its base template (which shows `user`).
ERROR_PAGE = """\
{% extends "base.html" %}
{% block content %}<h1 id="error">{{ status }} {{ reason }}</h1>{% endblock %}
"""

# The home app, with a page that keeps its pooled connection until it is released.
HOME_ROUTES = """
    import asyncio

    from aiohttp import web
    from sqlalchemy import text

    from aiosite import Routes, db_session

    routes = Routes()
    HOLDING = asyncio.Event()
    RELEASE = asyncio.Event()


    @routes.get("/hold", name="hold")
    async def hold(request: web.Request) -> web.Response:
        await db_session(request).execute(text("SELECT 1"))
        HOLDING.set()
        try:
            await asyncio.wait_for(RELEASE.wait(), 30)
        finally:
            HOLDING.clear()
            RELEASE.clear()
        return web.Response(text="held")


    @routes.get("/holding", name="holding")
    async def holding(request: web.Request) -> web.Response:
        # Answers once /hold has its connection (no database needed here).
        await asyncio.wait_for(HOLDING.wait(), 30)
        return web.Response(text="holding")


    @routes.get("/release", name="release")
    async def release(request: web.Request) -> web.Response:
        RELEASE.set()
        return web.Response(text="released")
"""

FILES = {
    "PKG/templates/503.html": ERROR_PAGE,
    "PKG/templates/404.html": ERROR_PAGE,
    "PKG/home/routes.py": HOME_ROUTES,
}


def assert_quiet(caplog: pytest.LogCaptureFixture) -> None:
    """Warnings only, each one line: no ERROR record and no traceback."""
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    assert "Traceback" not in caplog.text


@contextlib.asynccontextmanager
async def pool_held(client: Client) -> AsyncIterator[None]:
    """While a request holds the pool's only connection."""
    holder = asyncio.ensure_future(client.get("/hold"))
    assert (await client.get("/holding")).status == 200
    try:
        yield
    finally:
        await client.get("/release")
        assert (await holder).status == 200


async def assert_error_page(browser: Browser, path: str, status: int, reason: str) -> None:
    page = await browser.get(path, headers={"Accept": "text/html"})
    assert page.status == status, page.text
    # The site's template, not the plain-text fallback; nobody is shown as logged in.
    assert f'<h1 id="error">{status} {reason}</h1>' in page.text
    assert '<div id="whoami">Anonymous</div>' in page.text
    if status == 503:
        assert page.headers["Retry-After"] == "5"


@pytest.mark.db_backends("postgresql")
async def test_error_pages_of_a_database_outage_need_no_database(
    make_project: ProjectFactory,
    database: TestDatabase,
    browsers: BrowserFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The site reaches its own schema through a proxy: stopping the proxy is an outage
    # for this site only (its pooled connections cut, new ones refused).
    proxy = TcpProxy()
    await proxy.start()
    monkeypatch.setenv("AIOSITE_DATABASE__URL", proxy.url(database))
    async with site_with_tables(make_auth_project(make_project, files=FILES)) as client:
        await make_user(client.app, "ada")
        browser = browsers(client)
        assert (await browser.login("ada")).status == 303
        assert "user=ada" in await browser.whoami()
        await proxy.stop()
        caplog.clear()
        caplog.set_level(logging.DEBUG, logger="aiosite")
        # A pooled connection lost mid-request, then refused connections: the handler,
        # the login check of a guarded page, and a 404 whose page shows the user.
        for path in ("/blog/page", "/blog/private", "/blog/page"):
            await assert_error_page(browser, path, 503, "Service Unavailable")
        await assert_error_page(browser, "/nowhere", 404, "Not Found")
        assert_quiet(caplog)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 4  # one per request
        assert all(w.startswith("database unavailable: ") for w in warnings)
        await proxy.start()
        # The browser session was left alone: still logged in.
        assert "user=ada" in await browser.whoami()
    await proxy.stop()


# Seconds a request waits for a pooled connection in the exhausted-pool tests.
POOL_TIMEOUT = 1.5


def one_connection_pool(monkeypatch: pytest.MonkeyPatch, *, timeout: float) -> None:
    """The site's pool: one connection, waited for ``timeout`` seconds."""
    monkeypatch.setenv("AIOSITE_DATABASE__POOL_SIZE", "1")
    monkeypatch.setenv("AIOSITE_DATABASE__MAX_OVERFLOW", "0")
    monkeypatch.setenv("AIOSITE_DATABASE__POOL_TIMEOUT", str(timeout))


async def test_the_503_of_an_exhausted_pool_renders_without_a_second_wait(
    make_project: ProjectFactory,
    database: TestDatabase,
    browsers: BrowserFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    one_connection_pool(monkeypatch, timeout=POOL_TIMEOUT)
    async with site_with_tables(make_auth_project(make_project, files=FILES)) as client:
        await make_user(client.app, "ada")
        browser = browsers(client)
        assert (await browser.login("ada")).status == 303
        caplog.clear()
        async with pool_held(client):
            loop = asyncio.get_running_loop()
            started = loop.time()
            await assert_error_page(browser, "/blog/page", 503, "Service Unavailable")
            # One wait for a connection (the page's), not a second one for its error
            # page, which would make it at least 2 * POOL_TIMEOUT; the rest is slack
            # for a loaded machine.
            assert loop.time() - started < 2 * POOL_TIMEOUT
        assert_quiet(caplog)
        assert "user=ada" in await browser.whoami()


# A context processor of the site's that queries without looking at database_failed().
SITE_PY = """
    from sqlalchemy import func, select
    from aiosite import db_session
    from aiosite.contrib.auth import User

    async def user_count(request):
        return {"users": await db_session(request).scalar(select(func.count(User.id)))}

    context_processors = [user_count]
"""


async def test_an_error_page_that_queries_anyway_falls_back_to_text_with_a_warning(
    make_project: ProjectFactory,
    database: TestDatabase,
    browsers: BrowserFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    one_connection_pool(monkeypatch, timeout=0.3)
    files = {**FILES, "PKG/site.py": SITE_PY}
    async with site_with_tables(make_auth_project(make_project, files=files)) as client:
        browser = browsers(client)
        async with pool_held(client):
            caplog.clear()
            page = await browser.get("/blog/page", headers={"Accept": "text/html"})
            assert page.status == 503
            assert page.text == "503: Service Unavailable"
        assert_quiet(caplog)
        messages = [r.getMessage() for r in caplog.records if r.name.startswith("aiosite")]
        assert len(messages) == 2, messages
        assert messages[0].startswith("database unavailable: TimeoutError")
        assert messages[1].startswith("Rendering the error page 503.html failed again: ")
        assert "failed earlier in this request" in messages[1]
