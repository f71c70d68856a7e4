"""Templates: project overrides apps, render/template, context processors, autoescape."""

from __future__ import annotations

from aiosite import load_site
from aiosite.web.templates import TEMPLATES
from tests.conftest import ProjectFactory, site_client

NEWS = {
    "PKG/news/__init__.py": """
        from aiosite import App

        async def latest(request):
            return {"latest": "async-processor"}

        def sync_processor(request):
            return {"path_seen": request.path}

        app = App("news", context_processors=[latest, sync_processor],
                  template_globals={"answer": 42},
                  template_filters={"shout": lambda s: s.upper() + "!"})
    """,
    "PKG/news/routes.py": """
        from aiohttp import web
        from aiosite import Routes, render, render_string, template

        routes = Routes()

        @routes.get("/", name="index")
        @template("news/index.html")
        async def index(request: web.Request) -> dict[str, object]:
            return {"title": "<b>bold</b>"}

        @routes.get("/overridden", name="overridden")
        async def overridden(request: web.Request) -> web.Response:
            return await render(request, "news/overridden.html", status=202)

        @routes.get("/redirect", name="redirect")
        @template("news/index.html")
        async def redirect(request: web.Request) -> web.Response:
            return web.Response(status=204)

        @routes.get("/string", name="string")
        async def string(request: web.Request) -> web.Response:
            text = await render_string(request, "news/index.html", {"title": "s"})
            return web.Response(text=text.upper())

        @routes.view("/view", name="view")
        class NewsView(web.View):
            @template("news/index.html")
            async def get(self) -> dict[str, object]:
                return {"title": "from a view"}
    """,
    "PKG/news/templates/news/index.html": (
        "{% extends 'base.html' %}{% block body %}{{ title }}|{{ latest }}|{{ path_seen }}|"
        "{{ answer }}|{{ 'hi'|shout }}|{{ site.name }}|{{ request.method }}|"
        "{{ project_value }}{% endblock %}"
    ),
    "PKG/news/templates/news/overridden.html": "from the app",
    "PKG/templates/news/overridden.html": "from the project",
    "PKG/templates/base.html": "<main>{% block body %}{% endblock %}</main>",
    "PKG/site.py": """
        def project_processor(request):
            return {"project_value": "project-processor"}

        context_processors = [project_processor]
    """,
}


async def test_render_with_processors_globals_filters(make_project: ProjectFactory) -> None:
    root = make_project(NEWS, apps=["home", "news"])
    async with site_client(root) as client:
        resp = await client.get("/news/")
        assert resp.status == 200
        assert resp.content_type == "text/html"
        assert await resp.text() == (
            "<main>&lt;b&gt;bold&lt;/b&gt;|async-processor|/news/|42|HI!|Test Site|GET|"
            "project-processor</main>"
        )


async def test_project_templates_override_app_templates(make_project: ProjectFactory) -> None:
    root = make_project(NEWS, apps=["home", "news"])
    async with site_client(root) as client:
        resp = await client.get("/news/overridden")
        assert resp.status == 202
        assert await resp.text() == "from the project"


async def test_template_decorator_passes_responses_and_works_on_views(
    make_project: ProjectFactory,
) -> None:
    root = make_project(NEWS, apps=["home", "news"])
    async with site_client(root) as client:
        assert (await client.get("/news/redirect")).status == 204
        assert "from a view" in await (await client.get("/news/view")).text()
        assert (await (await client.get("/news/string")).text()).startswith("<MAIN>S|")


def test_autoreload_follows_debug(make_project: ProjectFactory) -> None:
    root = make_project()
    assert load_site(root, "development")[TEMPLATES].env.auto_reload is True
    assert load_site(root, "production")[TEMPLATES].env.auto_reload is False


async def test_plain_text_templates_are_not_escaped(make_project: ProjectFactory) -> None:
    files = {
        "PKG/home/templates/home/mail.txt": "Dear {{ name }}",
        "PKG/home/templates/home/page.svg": "<text>{{ name }}</text>",
        "PKG/home/routes.py": """
            from aiohttp import web
            from aiosite import Routes, render_string
            routes = Routes()

            @routes.get("/", name="index")
            async def index(request: web.Request) -> web.Response:
                ctx = {"name": "Tom & <Jerry>"}
                mail = await render_string(request, "home/mail.txt", ctx)
                svg = await render_string(request, "home/page.svg", ctx)
                return web.Response(text=mail + "|" + svg)
        """,
    }
    root = make_project(files)
    async with site_client(root) as client:
        text = await (await client.get("/")).text()
        assert text == "Dear Tom & <Jerry>|<text>Tom &amp; &lt;Jerry&gt;</text>"


async def test_changed_templates_reload_in_debug_only(make_project: ProjectFactory) -> None:
    import os

    root = make_project()
    template = next(root.glob("proj_*/home/templates/home/index.html"))
    for env, expect_reload in (("development", True), ("production", False)):
        template.write_text("<p>before</p>")
        async with site_client(root, env) as client:
            assert await (await client.get("/")).text() == "<p>before</p>"
            template.write_text("<p>after</p>")
            stat = template.stat()
            os.utime(template, (stat.st_atime, stat.st_mtime + 5))
            expected = "<p>after</p>" if expect_reload else "<p>before</p>"
            assert await (await client.get("/")).text() == expected
