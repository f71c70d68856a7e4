"""Routing: tables, methods, names under app prefixes, reversing from Python and templates."""

from __future__ import annotations

import pytest
from aiohttp import web

from aiosite import ImproperlyConfigured, NoReverseMatch, Routes, load_site, url_for
from aiosite.testing import csrf_headers
from tests.conftest import ProjectFactory, site_client

SHOP = {
    "PKG/shop/__init__.py": 'from aiosite import App\napp = App("shop", prefix="/shop")\n',
    "PKG/shop/views.py": """
        from aiohttp import web

        async def listing(request: web.Request) -> web.Response:
            return web.Response(text="list")
    """,
    "PKG/shop/routes.py": """
        from aiohttp import web
        from aiosite import Routes, json_response, url_for
        from . import views

        routes = Routes()
        routes.get("/", views.listing, name="list")

        @routes.get("/item/{slug}", name="item")
        async def item(request: web.Request) -> web.Response:
            return json_response({
                "slug": request.match_info["slug"],
                "self": url_for(request, "shop:item", slug="x y", page=2, tag=["a", "b"]),
                "list": url_for(request, "shop:list"),
                "static": url_for(request, "static", path="shop/x.css"),
            })

        @routes.post("/item", name="create")
        async def create(request: web.Request) -> web.Response:
            return web.Response(status=201, text="created")

        @routes.put("/item/{slug}", name="replace")
        async def replace(request: web.Request) -> web.Response:
            return web.Response(text="put")

        @routes.patch("/item/{slug}", name="update")
        async def update(request: web.Request) -> web.Response:
            return web.Response(text="patch")

        @routes.delete("/item/{slug}", name="remove")
        async def remove(request: web.Request) -> web.Response:
            return web.Response(status=204)

        @routes.route("OPTIONS", "/item", name="options")
        async def options(request: web.Request) -> web.Response:
            return web.Response(text="options")

        @routes.view("/cart", name="cart")
        class Cart(web.View):
            async def get(self) -> web.Response:
                return web.Response(text="cart get")

            async def post(self) -> web.Response:
                return web.Response(text="cart post")

        @routes.websocket("/ws", name="ws")
        async def ws(request: web.Request) -> web.WebSocketResponse:
            socket = web.WebSocketResponse()
            await socket.prepare(request)
            async for message in socket:
                await socket.send_str("echo:" + message.data)
            return socket

        @routes.get("/template", name="template")
        async def in_template(request: web.Request) -> web.Response:
            from aiosite import render
            return await render(request, "shop/links.html")
    """,
    "PKG/shop/templates/shop/links.html": (
        '<a href="{{ url("shop:item", slug="a&b", q="x<y") }}">item</a>'
        '<a href="{{ url("shop:list") }}">list</a>'
    ),
}


@pytest.fixture
def shop(make_project: ProjectFactory):  # type: ignore[no-untyped-def]
    return make_project(SHOP, apps=["home", "shop"])


async def test_methods_and_prefix(shop) -> None:  # type: ignore[no-untyped-def]
    async with site_client(shop) as client:
        assert await (await client.get("/shop/")).text() == "list"
        assert (await client.head("/shop/")).status == 200
        assert (await client.post("/shop/item", headers=await csrf_headers(client))).status == 201
        assert (
            await (await client.put("/shop/item/a", headers=await csrf_headers(client))).text()
            == "put"
        )
        assert (
            await (await client.patch("/shop/item/a", headers=await csrf_headers(client))).text()
            == "patch"
        )
        assert (
            await client.delete("/shop/item/a", headers=await csrf_headers(client))
        ).status == 204
        assert await (await client.options("/shop/item")).text() == "options"
        assert await (await client.get("/shop/cart")).text() == "cart get"
        assert (
            await (await client.post("/shop/cart", headers=await csrf_headers(client))).text()
            == "cart post"
        )
        resp = await client.delete("/shop/cart", headers=await csrf_headers(client))
        assert resp.status == 405


async def test_websocket_route(shop) -> None:  # type: ignore[no-untyped-def]
    async with site_client(shop) as client, client.ws_connect("/shop/ws") as socket:
        await socket.send_str("hi")
        assert await socket.receive_str() == "echo:hi"


async def test_reverse_from_python(shop) -> None:  # type: ignore[no-untyped-def]
    async with site_client(shop) as client:
        data = await (await client.get("/shop/item/abc")).json()
        assert data == {
            "slug": "abc",
            "self": "/shop/item/x%20y?page=2&tag=a&tag=b",
            "list": "/shop/",
            "static": "/static/shop/x.css",
        }


async def test_reverse_from_template_is_escaped(shop) -> None:  # type: ignore[no-untyped-def]
    async with site_client(shop) as client:
        body = await (await client.get("/shop/template")).text()
        assert 'href="/shop/item/a&amp;b?q=x%3Cy"' in body
        assert 'href="/shop/"' in body


def test_reverse_errors(shop) -> None:  # type: ignore[no-untyped-def]
    app = load_site(shop, "test")
    with pytest.raises(
        NoReverseMatch, match=r"no route named 'shop:itme'; did you mean 'shop:item'"
    ):
        url_for(app, "shop:itme")
    with pytest.raises(
        NoReverseMatch, match=r"route 'shop:item' \(/shop/item/\{slug\}\) needs slug"
    ):
        url_for(app, "shop:item", page=1)
    with pytest.raises(NoReverseMatch, match="route names have the form 'app:name'"):
        url_for(app, "zzzz")
    assert url_for(app, "shop:item", slug="a", empty=None) == "/shop/item/a"


def test_bad_route_definitions() -> None:
    routes = Routes()
    with pytest.raises(ImproperlyConfigured, match="must start with '/'"):
        routes.get("no-slash", name="x")


def test_duplicate_route_names_are_a_clear_error(make_project: ProjectFactory) -> None:
    files = {
        "PKG/dup/__init__.py": "",
        "PKG/dup/routes.py": """
            from aiohttp import web
            from aiosite import Routes
            routes = Routes()

            async def a(request: web.Request) -> web.Response:
                return web.Response()

            routes.get("/a", a, name="same")
            routes.get("/b", a, name="same")
        """,
    }
    root = make_project(files, apps=["dup"], with_home=False)
    with pytest.raises(
        ImproperlyConfigured, match=r"app 'dup': cannot add route GET /dup/b .*same"
    ):
        load_site(root, "test")


async def test_plain_aiohttp_still_works(shop) -> None:  # type: ignore[no-untyped-def]
    app = load_site(shop, "test")

    async def raw(request: web.Request) -> web.Response:
        return web.Response(text="raw aiohttp")

    sub = web.Application()
    sub.router.add_get("/x", raw)
    app.add_subapp("/sub", sub)
    app.router.add_get("/raw", raw, name="raw")
    from aiohttp.test_utils import TestClient, TestServer

    async with TestClient(TestServer(app)) as client:
        assert await (await client.get("/raw")).text() == "raw aiohttp"
        assert await (await client.get("/sub/x")).text() == "raw aiohttp"
        assert url_for(app, "raw") == "/raw"
