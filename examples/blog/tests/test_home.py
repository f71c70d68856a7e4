from sqlalchemy.ext.asyncio import AsyncSession
from support import AddPosts, Client


async def test_home_page(client: Client) -> None:
    resp = await client.get("/")
    assert resp.status == 200
    body = await resp.text()
    assert "<title>The aiosite Blog</title>" in body
    assert "Welcome to The aiosite Blog" in body
    assert 'href="/static/site.css"' in body
    assert 'href="/static/home/home.css"' in body


async def test_home_page_shows_the_three_latest_posts(client: Client, add_posts: AddPosts) -> None:
    await add_posts(4)
    await add_posts(1, published=False, first=5)
    body = await (await client.get("/")).text()
    assert '<h3><a href="/blog/post-4">Post 4</a></h3>' in body
    assert '<h3><a href="/blog/post-2">Post 2</a></h3>' in body
    assert "Post 1<" not in body
    assert "Post 5<" not in body
    assert body.index("Post 4") < body.index("Post 3") < body.index("Post 2")
    assert '<a href="/blog/">All posts &rarr;</a>' in body


async def test_home_page_without_posts(client: Client, db: AsyncSession) -> None:
    body = await (await client.get("/")).text()
    assert 'No posts yet. <a href="/blog/new">Write the first one.</a>' in body


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
    assert '<a href="/blog/">Blog</a>' in home
    assert '<a href="/about">About</a>' in home
    about = await (await client.get("/about")).text()
    assert '<a href="/">Home</a>' in about
    assert '<a href="/about" aria-current="page">About</a>' in about


async def test_stylesheets_are_served(client: Client) -> None:
    for path in ("/static/site.css", "/static/home/home.css", "/static/blog/blog.css"):
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
