"""Templates that await nothing render synchronously; the others (and those that turn out
to await something while rendering) render in Jinja2's async mode, with the same output."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import ProjectFactory, site_client

PAGES = {
    "PKG/pages/__init__.py": """
        import asyncio

        from aiosite import App


        async def later(value):
            await asyncio.sleep(0)
            return f"later:{value}"


        def promise(value):
            # A plain function that returns an awaitable: only the render can tell.
            return later(value)


        async def slow_upper(value):
            await asyncio.sleep(0)
            return value.upper()


        app = App(
            "pages",
            prefix="",
            template_globals={"later": later, "promise": promise},
            template_filters={"slow_upper": slow_upper},
        )
    """,
    "PKG/pages/routes.py": """
        import asyncio

        from aiohttp import web

        from aiosite import Routes, render_string
        from aiosite.web.templates import TEMPLATES

        routes = Routes()


        class Post:
            title = "plain attribute"

            @property
            def summary(self):
                async def load():
                    await asyncio.sleep(0)
                    return "awaited attribute"

                return load()


        async def numbers():
            for n in range(3):
                await asyncio.sleep(0)
                yield n


        CONTEXTS = {
            "plain": lambda: {"items": [1, 2, 3], "which": "pages/plain.html"},
            "post": lambda: {"post": Post(), "items": []},
            "stream": lambda: {"stream": numbers()},
            "generator": lambda: {"rows": (n for n in range(3))},
        }


        @routes.get("/{name:.+}", name="show")
        async def show(request: web.Request) -> web.Response:
            name = request.match_info["name"]
            context = CONTEXTS[request.query.get("ctx", "plain")]()
            text = await render_string(request, name, context)
            is_async = await request.config_dict[TEMPLATES].renders_async(name)
            return web.Response(text=text, headers={"X-Async": "yes" if is_async else "no"})
    """,
    "PKG/pages/templates/pages/plain.html": (
        "{% for i in items %}{{ i }}{% endfor %}|{{ site.name }}|"
        "{{ url('pages:show', name='x') }}|{{ '<b>'|upper }}|{{ items|sum }}"
    ),
    "PKG/pages/templates/pages/awaits.html": "{{ later('x') }}",
    "PKG/pages/templates/pages/filtered.html": "{{ 'quiet'|slow_upper }}",
    "PKG/pages/templates/pages/tested.html": "{% if 3 is odd %}odd{% endif %}",
    "PKG/pages/templates/pages/includes.html": "[{% include 'pages/awaits.html' %}]",
    "PKG/pages/templates/pages/base_async.html": (
        "{{ later('base') }}<{% block body %}{% endblock %}>"
    ),
    "PKG/pages/templates/pages/extends.html": (
        "{% extends 'pages/base_async.html' %}{% block body %}child{% endblock %}"
    ),
    "PKG/pages/templates/pages/macros.html": (
        "{% macro greet(name) %}hello {{ later(name) }}{% endmacro %}"
    ),
    "PKG/pages/templates/pages/imports.html": (
        "{% import 'pages/macros.html' as m %}{{ m.greet('ann') }}"
    ),
    "PKG/pages/templates/pages/from_imports.html": (
        "{% from 'pages/macros.html' import greet %}{{ greet('bob') }}"
    ),
    "PKG/pages/templates/pages/sync_macros.html": "{% macro hi(name) %}hi {{ name }}{% endmacro %}",
    "PKG/pages/templates/pages/sync_base.html": "({% block body %}{% endblock %})",
    "PKG/pages/templates/pages/all_sync.html": (
        "{% extends 'pages/sync_base.html' %}{% from 'pages/sync_macros.html' import hi %}"
        "{% block body %}{{ hi('cy') }}{% include 'pages/plain.html' %}{% endblock %}"
    ),
    "PKG/pages/templates/pages/dynamic.html": "{% include which %}",
    "PKG/pages/templates/pages/promise.html": "{{ promise('p') }}",
    "PKG/pages/templates/pages/attribute.html": "{{ post.title }}/{{ post.summary }}",
    "PKG/pages/templates/pages/stream.html": (
        "{% for n in stream %}{{ n }}{% endfor %}|{{ loop_free|default('-') }}"
    ),
    "PKG/pages/templates/pages/form.html": "<form>{{ csrf_input() }}</form>",
    "PKG/pages/templates/pages/rows.html": (
        "{% for r in rows %}[{{ r }}]{% endfor %} {{ promise('x') }}"
    ),
    "PKG/pages/templates/pages/broken.html": "{{ items + 1 }}",
}


def pages_project(make_project: ProjectFactory, **kwargs: object) -> Path:
    return make_project(PAGES, apps=["pages"], with_home=False, **kwargs)


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("pages/plain.html", "123|Test Site|/x|&lt;B&gt;|6"),
        ("pages/all_sync.html", "(hi cy123|Test Site|/x|&lt;B&gt;|6)"),
    ],
)
async def test_a_template_that_awaits_nothing_renders_synchronously(
    make_project: ProjectFactory, name: str, body: str
) -> None:
    async with site_client(pages_project(make_project)) as client:
        resp = await client.get(f"/{name}")
        assert resp.status == 200
        assert await resp.text() == body
        assert resp.headers["X-Async"] == "no"


@pytest.mark.parametrize(
    ("name", "body"),
    [
        # It calls an async global, an async filter.
        ("pages/awaits.html", "later:x"),
        ("pages/filtered.html", "QUIET"),
        # It includes, extends or imports (as a module, or a macro from it) a template
        # that calls one.
        ("pages/includes.html", "[later:x]"),
        ("pages/extends.html", "later:base<child>"),
        ("pages/imports.html", "hello later:ann"),
        ("pages/from_imports.html", "hello later:bob"),
        # It includes a template named at render time: it could be any.
        ("pages/dynamic.html", "123|Test Site|/x|&lt;B&gt;|6"),
    ],
)
async def test_a_template_that_awaits_renders_asynchronously(
    make_project: ProjectFactory, name: str, body: str
) -> None:
    async with site_client(pages_project(make_project)) as client:
        resp = await client.get(f"/{name}")
        assert resp.status == 200
        assert await resp.text() == body
        assert resp.headers["X-Async"] == "yes"


async def test_an_async_test_makes_a_template_async(make_project: ProjectFactory) -> None:
    files = {
        **PAGES,
        "PKG/site.py": """
            from aiosite.web.templates import TEMPLATES


            async def odd(value):
                return value % 2 == 1


            def setup(app, settings, registry):
                # Apps declare no tests: added to the environment, as an extension would.
                app[TEMPLATES].env.tests["odd"] = odd
        """,
    }
    async with site_client(make_project(files, apps=["pages"], with_home=False)) as client:
        resp = await client.get("/pages/tested.html")
        assert await resp.text() == "odd"
        assert resp.headers["X-Async"] == "yes"


async def test_csrf_input_renders_asynchronously(make_project: ProjectFactory) -> None:
    async with site_client(pages_project(make_project)) as client:
        resp = await client.get("/pages/form.html")
        text = await resp.text()
        assert text.startswith('<form><input type="hidden" name="')
        assert 'value="' in text
        assert 'value=""' not in text
        assert resp.headers["X-Async"] == "yes"


@pytest.mark.parametrize(
    ("name", "ctx", "body"),
    [
        # A plain function that returns a coroutine.
        ("pages/promise.html", "plain", "later:p"),
        # An attribute that is a coroutine (as SQLAlchemy's awaitable_attrs).
        ("pages/attribute.html", "post", "plain attribute/awaited attribute"),
    ],
)
async def test_a_template_that_meets_an_async_value_renders_again_asynchronously(
    make_project: ProjectFactory, name: str, ctx: str, body: str
) -> None:
    async with site_client(pages_project(make_project)) as client:
        for _ in range(2):
            resp = await client.get(f"/{name}", params={"ctx": ctx})
            assert resp.status == 200
            assert await resp.text() == body
            # Found out on the first render; asynchronous from then on.
            assert resp.headers["X-Async"] == "yes"


@pytest.mark.parametrize(
    ("name", "ctx", "body"),
    [
        # An async iterable in a loop.
        ("pages/stream.html", "stream", "012|-"),
        # A generator, then an awaitable: a synchronous render stopped at the awaitable
        # would have left the generator consumed for the async render.
        ("pages/rows.html", "generator", "[0][1][2] later:x"),
    ],
)
async def test_a_context_holding_an_iterator_renders_asynchronously_at_once(
    make_project: ProjectFactory, name: str, ctx: str, body: str
) -> None:
    async with site_client(pages_project(make_project)) as client:
        resp = await client.get(f"/{name}", params={"ctx": ctx})
        assert (resp.status, await resp.text()) == (200, body)
        # The template itself stays synchronous: a list would render it so.
        resp = await client.get("/pages/stream.html", params={"ctx": "plain"})
        assert (await resp.text(), resp.headers["X-Async"]) == ("|-", "no")


async def test_a_template_error_is_still_an_error(make_project: ProjectFactory) -> None:
    async with site_client(pages_project(make_project)) as client:
        resp = await client.get("/pages/broken.html")
        assert resp.status == 500
        # Still a sync template: its error was not an async value.
        resp = await client.get("/pages/plain.html")
        assert resp.headers["X-Async"] == "no"


async def test_every_template_renders_asynchronously_when_set(
    make_project: ProjectFactory,
) -> None:
    root = pages_project(make_project, env_yaml={"test": "templates:\n  async_rendering: always\n"})
    async with site_client(root) as client:
        resp = await client.get("/pages/plain.html")
        assert await resp.text() == "123|Test Site|/x|&lt;B&gt;|6"
        assert resp.headers["X-Async"] == "yes"


async def test_an_include_that_starts_awaiting_is_seen_on_reload(
    make_project: ProjectFactory,
) -> None:
    files = {
        **PAGES,
        "PKG/pages/templates/pages/outer.html": "<{% include 'pages/part.html' %}>",
        "PKG/pages/templates/pages/part.html": "plain part",
    }
    root = make_project(files, apps=["pages"], with_home=False)
    part = next(root.glob("proj_*/pages/templates/pages/part.html"))
    async with site_client(root, "development") as client:
        resp = await client.get("/pages/outer.html")
        assert (await resp.text(), resp.headers["X-Async"]) == ("<plain part>", "no")
        part.write_text("{{ later('part') }}")
        stat = part.stat()
        os.utime(part, (stat.st_atime, stat.st_mtime + 5))
        resp = await client.get("/pages/outer.html")
        assert (await resp.text(), resp.headers["X-Async"]) == ("<later:part>", "yes")
