"""A small project with aiosite.contrib.auth, and a browser to drive it over HTTP.

The project lists ``aiosite.contrib.auth`` and a ``blog`` app whose pages are guarded
by the auth decorators. ``Browser`` is an HTTP client with its own cookie jar (so two
browsers are two sessions of one site) and, when asked, its own loopback address (so
that throttling per client address can be seen: 127.0.0.2 is a different client).
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from multidict import CIMultiDictProxy
from sqlalchemy import select

from aiosite import session_scope
from aiosite.db.models import Model
from tests.conftest import ProjectFactory, site_with_tables

AUTH_PACKAGE = "aiosite.contrib.auth"
FAST_HASHER = "  hasher: {time_cost: 1, memory_cost: 8, parallelism: 1}\n"
PASSWORD = "correct horse battery"  # noqa: S105 - the test users' password

DEFAULT_YAML = """\
site:
  name: Test Site
  package: PKG
apps:
  - PKG.home
  - aiosite.contrib.auth
  - PKG.blog
"""

BASE_HTML = """\
<!doctype html>
<title>{% block title %}{{ site.name }}{% endblock %}</title>
<div id="whoami">
{%- if user.is_authenticated %}Logged in as {{ user.username }}{% else %}Anonymous{% endif -%}
</div>
{% for category, message in flashed_messages() %}
<p class="flash {{ category }}">{{ message }}</p>
{% endfor %}
{% block content %}{% endblock %}
"""

BLOG_FILES = {
    "PKG/templates/base.html": BASE_HTML,
    "PKG/blog/__init__.py": "",
    "PKG/blog/models.py": """
        from sqlalchemy import String
        from sqlalchemy.orm import Mapped, mapped_column

        from aiosite import Model


        class Post(Model):
            __tablename__ = "PKG_post"

            id: Mapped[int] = mapped_column(primary_key=True)
            title: Mapped[str] = mapped_column(String(100))
    """,
    "PKG/blog/routes.py": """
        from aiohttp import web

        from aiosite import Routes, get_session, json_response, render
        from aiosite.contrib.auth import (
            current_user,
            login_needed,
            login_required,
            permission_required,
        )

        routes = Routes()


        @routes.get("/private", name="private")
        @login_required
        async def private(request: web.Request) -> web.Response:
            user = await current_user(request)
            return web.Response(text=f"private page of {user.username}")


        @routes.get("/edit", name="edit")
        @permission_required("blog.change_post")
        async def edit(request: web.Request) -> web.Response:
            return web.Response(text="editing posts")


        @routes.view("/posts", name="posts")
        class Posts(web.View):
            @login_required
            async def get(self) -> web.Response:
                return web.Response(text="the posts")

            @permission_required("blog.delete_post")
            async def post(self) -> web.Response:
                return web.Response(text="deleted a post")


        @routes.get("/api/me", name="api_me", api=True)
        @login_required
        async def api_me(request: web.Request) -> web.Response:
            user = await current_user(request)
            return json_response({"username": user.username})


        @routes.get("/typo", name="typo")
        @permission_required("blog.chnage_post")
        async def typo(request: web.Request) -> web.Response:
            return web.Response(text="never")


        @routes.post("/comment", name="comment")
        async def comment(request: web.Request) -> web.Response:
            if not (await current_user(request)).is_authenticated:
                raise login_needed(request, next_path="/somewhere")
            return web.Response(text="commented")


        @routes.get("/page", name="page")
        async def page(request: web.Request) -> web.Response:
            return await render(request, "blog/page.html")


        @routes.get("/remember", name="remember")
        async def remember(request: web.Request) -> web.Response:
            # Something an anonymous visitor's session holds: it is stored from now on.
            (await get_session(request))["theme"] = "dark"
            return web.Response(text="remembered")
    """,
    "PKG/blog/templates/blog/page.html": (
        "{% extends 'base.html' %}{% block content %}"
        "<p id='page'>user={{ user.username or 'nobody' }} "
        "authenticated={{ user.is_authenticated }} "
        "can_edit={{ has_perm('blog.change_post') }}</p>{% endblock %}"
    ),
}

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def auth_yaml(extra: str = "") -> str:
    """The test settings' ``auth:`` section: the fast hasher, then ``extra`` lines."""
    return "auth:\n" + FAST_HASHER + extra


def make_auth_project(
    make_project: ProjectFactory,
    *,
    test_yaml: str | None = None,
    files: dict[str, str] | None = None,
) -> Path:
    return make_project(
        {**BLOG_FILES, **(files or {})},
        default_yaml=DEFAULT_YAML,
        env_yaml={"test": test_yaml if test_yaml is not None else auth_yaml()},
    )


def auth() -> ModuleType:
    """The auth package as imported now (see ``_live_auth_models``)."""
    return importlib.import_module(AUTH_PACKAGE)


@pytest.fixture(autouse=True)
def _live_auth_models() -> None:
    """Re-import the auth app when a test project's teardown dropped its models.

    Every project shares aiosite's one declarative registry; when a test project with
    models ends, tests/conftest.py disposes of the whole registry and empties the
    MetaData, the auth models' mappings with them. The next import of the app must make
    them again, so the stale modules are forgotten here; tests reach the app through
    ``auth()`` rather than names imported at module level.
    """
    if AUTH_PACKAGE + ".models" in sys.modules and "auth_user" not in Model.metadata.tables:
        for name in list(sys.modules):
            if name == AUTH_PACKAGE or name.startswith(AUTH_PACKAGE + "."):
                del sys.modules[name]


@dataclass
class Page:
    status: int
    text: str
    headers: CIMultiDictProxy[str]

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")

    def csrf(self) -> str:
        found = CSRF_RE.search(self.text)
        assert found is not None, f"no csrf_token field in:\n{self.text}"
        return found.group(1)


class Browser:
    """One browser: a cookie jar, and a loopback source address of its own."""

    def __init__(self, client: TestClient[web.Request, web.Application], ip: str) -> None:
        self.client = client
        connector = aiohttp.TCPConnector(local_addr=(ip, 0))
        self.session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.CookieJar(unsafe=True)
        )

    async def request(self, method: str, path: str, **kwargs: Any) -> Page:
        kwargs.setdefault("allow_redirects", False)
        async with self.session.request(method, self.client.make_url(path), **kwargs) as resp:
            return Page(resp.status, await resp.text(), resp.headers)

    async def get(self, path: str, **kwargs: Any) -> Page:
        return await self.request("GET", path, **kwargs)

    async def submit(
        self, path: str, data: dict[str, str], *, form_page: str | None = None, **kwargs: Any
    ) -> Page:
        """POST ``data`` with the CSRF token of the form at ``form_page`` (``path``)."""
        form = await self.get(form_page or path)
        return await self.request("POST", path, data={**data, "csrf_token": form.csrf()}, **kwargs)

    async def login(self, username: str, password: str = PASSWORD, **extra: str) -> Page:
        return await self.submit(
            "/auth/login", {"username": username, "password": password, **extra}
        )

    async def logout(self) -> Page:
        return await self.submit("/auth/logout", {}, form_page="/auth/login")

    async def whoami(self) -> str:
        page = await self.get("/blog/page")
        found = re.search(r"<p id='page'>(.*?)</p>", page.text)
        assert found is not None, page.text
        return found.group(1)

    @property
    def session_cookie(self) -> str | None:
        for cookie in self.session.cookie_jar:
            if cookie.key == "aiosite_session":
                return cookie.value
        return None

    def set_session_cookie(self, value: str) -> None:
        self.session.cookie_jar.clear()
        self.session.cookie_jar.update_cookies(
            {"aiosite_session": value}, response_url=self.client.make_url("/")
        )

    async def close(self) -> None:
        await self.session.close()


BrowserFactory = Callable[..., Browser]


@pytest.fixture
async def site(
    make_project: ProjectFactory,
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """The auth project's site, started, with its tables."""
    async with site_with_tables(make_auth_project(make_project)) as client:
        yield client


@pytest.fixture
async def browsers() -> AsyncIterator[BrowserFactory]:
    """``browsers(site)`` or ``browsers(site, ip="127.0.0.2")``: a new browser."""
    made: list[Browser] = []

    def factory(client: TestClient[web.Request, web.Application], ip: str = "127.0.0.1") -> Browser:
        browser = Browser(client, ip)
        made.append(browser)
        return browser

    yield factory
    for browser in made:
        await browser.close()


async def make_user(
    app: web.Application, username: str, password: str = PASSWORD, **fields: Any
) -> int:
    """Create a user directly in the site's database; its id."""
    module = auth()
    async with session_scope(app) as session:
        user = module.User(username=username, **fields)
        user.password = await module.passwords_of(app).hash(password)
        session.add(user)
        await session.flush()
        return int(user.id)


async def stored_user(app: web.Application, username: str) -> Any:
    module = auth()
    async with session_scope(app) as session:
        return await session.scalar(select(module.User).where(module.User.username == username))
