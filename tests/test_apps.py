"""Apps: listed in order, imported by the site factory, clashes are clear errors."""

from __future__ import annotations

import pytest

from aiosite import ImproperlyConfigured, load_site
from aiosite.keys import APPS
from tests.conftest import ProjectFactory, site_client

BLOG = {
    "PKG/blog/__init__.py": 'from aiosite import App\napp = App("blog", prefix="/blog")\n',
    "PKG/blog/routes.py": """
        from aiohttp import web
        from aiosite import Routes
        routes = Routes()

        @routes.get("/", name="index")
        async def index(request: web.Request) -> web.Response:
            return web.Response(text="blog index")
    """,
}


async def test_apps_are_mounted_under_their_prefix(make_project: ProjectFactory) -> None:
    root = make_project(BLOG, apps=["home", "blog"])
    async with site_client(root) as client:
        resp = await client.get("/blog/")
        assert resp.status == 200
        assert await resp.text() == "blog index"
        assert (await client.get("/")).status == 200
        assert [app.name for app in client.app[APPS]] == ["home", "blog"]


async def test_app_without_declaration_gets_name_and_prefix(make_project: ProjectFactory) -> None:
    files = dict(BLOG)
    files["PKG/blog/__init__.py"] = ""
    root = make_project(files, apps=["home", "blog"])
    async with site_client(root) as client:
        assert (await client.get("/blog/")).status == 200
        assert client.app[APPS].get("blog") is not None


def test_app_that_cannot_be_imported(make_project: ProjectFactory) -> None:
    root = make_project(apps=["home", "nosuchapp"])
    with pytest.raises(ImproperlyConfigured, match=r"apps: cannot import '.*\.nosuchapp': no such"):
        load_site(root, "test")


def test_app_whose_import_fails_shows_the_cause(make_project: ProjectFactory) -> None:
    root = make_project(
        {"PKG/broken/__init__.py": "import nosuchmodule_xyz\n"}, apps=["home", "broken"]
    )
    with pytest.raises(
        ImproperlyConfigured, match=r"importing .*broken.* failed.*nosuchmodule_xyz"
    ):
        load_site(root, "test")


def test_same_name_clashes(make_project: ProjectFactory) -> None:
    files = dict(BLOG)
    files["PKG/other/__init__.py"] = 'from aiosite import App\napp = App("blog", prefix="/o")\n'
    root = make_project(files, apps=["home", "blog", "other"])
    with pytest.raises(ImproperlyConfigured, match="are both named 'blog'"):
        load_site(root, "test")


def test_same_prefix_clashes(make_project: ProjectFactory) -> None:
    files = dict(BLOG)
    files["PKG/other/__init__.py"] = 'from aiosite import App\napp = App("other", prefix="/blog")\n'
    root = make_project(files, apps=["home", "blog", "other"])
    with pytest.raises(ImproperlyConfigured, match="are both mounted at '/blog'"):
        load_site(root, "test")


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        ('app = "blog"', r"\.app must be an aiosite\.App\(\.\.\.\) declaration"),
        ('from aiosite import App\napp = App("my-blog")', "an app name must be an identifier"),
        ('from aiosite import App\napp = App("blog", prefix="blog x")', "a prefix looks like"),
    ],
)
def test_bad_declarations(make_project: ProjectFactory, declaration: str, message: str) -> None:
    files = dict(BLOG)
    files["PKG/blog/__init__.py"] = declaration + "\n"
    root = make_project(files, apps=["home", "blog"])
    with pytest.raises(ImproperlyConfigured, match=message):
        load_site(root, "test")


def test_routes_module_without_table(make_project: ProjectFactory) -> None:
    files = dict(BLOG)
    files["PKG/blog/routes.py"] = "routes = []\n"
    root = make_project(files, apps=["home", "blog"])
    with pytest.raises(
        ImproperlyConfigured, match=r"blog\.routes must define `routes = Routes\(\)`"
    ):
        load_site(root, "test")


async def test_project_hooks_and_app_setup(make_project: ProjectFactory) -> None:
    files = dict(BLOG)
    files["PKG/blog/__init__.py"] = """
        from aiohttp import web
        from aiosite import App

        def add_ping(app: web.Application) -> None:
            async def ping(request: web.Request) -> web.Response:
                return web.Response(text="pong")
            app.router.add_get("/ping", ping)

        app = App("blog", prefix="/blog", setup=add_ping)
    """
    files["PKG/site.py"] = """
        from aiohttp import web

        @web.middleware
        async def stamp(request, handler):
            response = await handler(request)
            response.headers["X-Stamp"] = "project"
            return response

        middlewares = [stamp]

        def setup(app: web.Application) -> None:
            async def extra(request: web.Request) -> web.Response:
                return web.Response(text="extra")
            app.router.add_get("/extra", extra)
    """
    root = make_project(files, apps=["home", "blog"])
    async with site_client(root) as client:
        resp = await client.get("/ping")
        assert await resp.text() == "pong"
        assert resp.headers["X-Stamp"] == "project"
        assert await (await client.get("/extra")).text() == "extra"
