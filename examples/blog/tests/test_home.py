from aiohttp import web
from aiohttp.test_utils import TestClient

Client = TestClient[web.Request, web.Application]


async def test_home_page(client: Client) -> None:
    resp = await client.get("/")
    assert resp.status == 200
    body = await resp.text()
    assert "<title>The aiosite Blog</title>" in body
    assert "Welcome to The aiosite Blog" in body
    assert 'href="/static/site.css"' in body
    assert 'href="/static/home/home.css"' in body


async def test_about_page(client: Client) -> None:
    resp = await client.get("/about")
    assert resp.status == 200
    body = await resp.text()
    assert "<title>About · The aiosite Blog</title>" in body
    assert "<h1>About this blog</h1>" in body
    assert '<li class="done">' in body
    assert '<li class="planned">' in body


async def test_navigation_marks_the_current_page(client: Client) -> None:
    home = await (await client.get("/")).text()
    assert '<a href="/" aria-current="page">Home</a>' in home
    assert '<a href="/about">About</a>' in home
    about = await (await client.get("/about")).text()
    assert '<a href="/">Home</a>' in about
    assert '<a href="/about" aria-current="page">About</a>' in about


async def test_stylesheets_are_served(client: Client) -> None:
    for path in ("/static/site.css", "/static/home/home.css"):
        resp = await client.get(path)
        assert resp.status == 200
        assert resp.content_type == "text/css"
        assert resp.headers["ETag"]


async def test_missing_page_is_404(client: Client) -> None:
    resp = await client.get("/no-such-page")
    assert resp.status == 404
    body = await resp.text()
    assert "Page not found" in body  # templates/404.html
    assert '<a href="/about">About</a>' in body  # which extends base.html
