"""The blog's pages: the post list and its pages, a post with its comments, tag pages.

Who may comment, write and edit is tested in test_accounts.py.
"""

import re

from blogsite.blog.models import Comment
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from support import AddPosts, AddTag, AddUser, Client, LogIn

from aiosite.contrib.auth import User
from aiosite.testing import csrf_token


def titles(html: str) -> list[str]:
    return re.findall(r'<h2><a href="/blog/[^"]+">([^<]+)</a></h2>', html)


async def test_list_shows_published_posts_newest_first_ten_a_page(
    client: Client, add_posts: AddPosts
) -> None:
    await add_posts(25)
    resp = await client.get("/blog/")
    assert resp.status == 200
    html = await resp.text()
    assert titles(html) == [f"Post {n}" for n in range(25, 15, -1)]
    assert "Posts 1\u201310 of 25, newest first." in html
    assert '<a class="step" rel="next" href="/blog/?page=2">' in html
    assert 'rel="prev"' not in html
    assert '<a href="/blog/" aria-current="page" aria-label="Page 1">1</a>' in html

    page2 = await (await client.get("/blog/?page=2")).text()
    assert titles(page2) == [f"Post {n}" for n in range(15, 5, -1)]
    # Page 1 is linked without ?page=1.
    assert '<a class="step" rel="prev" href="/blog/">' in page2
    assert '<a class="step" rel="next" href="/blog/?page=3">' in page2

    page3 = await (await client.get("/blog/?page=3")).text()
    assert titles(page3) == [f"Post {n}" for n in range(5, 0, -1)]
    assert "Posts 21\u201325 of 25" in page3
    assert 'rel="next"' not in page3


async def test_a_page_that_does_not_exist_is_404(client: Client, add_posts: AddPosts) -> None:
    await add_posts(11)
    for query in ("?page=3", "?page=0", "?page=abc", "?page=-1"):
        resp = await client.get(f"/blog/{query}")
        assert resp.status == 404, query
        assert "Page not found" in await resp.text()


async def test_page_links_leave_out_the_middle_of_a_long_list(
    client: Client, add_posts: AddPosts
) -> None:
    await add_posts(65)  # 7 pages
    html = await (await client.get("/blog/")).text()
    nav = html[
        html.index('<nav class="pagination"') : html.index("</nav>", html.index("pagination"))
    ]
    links = re.findall(r'aria-label="Page (\d+)"|class="gap"', nav)
    assert links == ["1", "2", "3", "", "7"]  # "" is the gap

    middle = await (await client.get("/blog/?page=4")).text()
    nav = middle[middle.index('<nav class="pagination"') :]
    assert re.findall(r'aria-label="Page (\d+)"', nav) == ["1", "2", "3", "4", "5", "6", "7"]


async def test_no_posts_yet(client: Client, db: AsyncSession) -> None:
    resp = await client.get("/blog/")
    assert resp.status == 200
    html = await resp.text()
    assert "No posts yet." in html
    assert 'class="pagination"' not in html


async def test_drafts_are_not_listed_and_only_their_author_sees_them(
    client: Client, add_posts: AddPosts, add_tag: AddTag, log_in: LogIn
) -> None:
    tag = await add_tag("aiohttp", "aiohttp")
    await add_posts(2, tags=[tag])
    await add_posts(1, published=False, first=3, tags=[tag])
    for path in ("/blog/", "/blog/tags/aiohttp", "/"):
        html = await (await client.get(path)).text()
        assert "Post 1" in html, path
        assert "Post 2" in html, path
        assert "Post 3" not in html, path

    # To anybody else a draft does not exist.
    resp = await client.get("/blog/post-3")
    assert resp.status == 404
    assert "There is no post at “post-3”." in await resp.text()

    await log_in("ada")
    resp = await client.get("/blog/post-3")
    assert resp.status == 200
    html = await resp.text()
    assert "<h1>Post 3</h1>" in html
    assert "Draft: only its author and the editors can see it" in html
    assert "comment-form" not in html  # no comments on a draft
    assert "Log in to comment" not in html

    data = {"body": "Hi", "csrf_token": await csrf_token(client)}
    resp = await client.post("/blog/post-3/comments", data=data)
    assert resp.status == 404


async def test_detail_shows_the_post_its_tags_and_comments_oldest_first(
    client: Client, db: AsyncSession, add_posts: AddPosts, add_tag: AddTag, add_user: AddUser
) -> None:
    tags = [await add_tag("Testing", "testing"), await add_tag("aiohttp", "aiohttp")]
    (post,) = await add_posts(1, tags=tags)
    grace, ken = await add_user("grace"), await add_user("ken")
    later, earlier = post.created.replace(hour=12), post.created.replace(hour=10)
    db.add_all(
        [
            Comment(post_id=post.id, author_id=grace.id, body="Second <b>!</b>", created=later),
            Comment(
                post_id=post.id,
                author_id=ken.id,
                body="First.\n\nTwo paragraphs.",
                created=earlier,
            ),
        ]
    )
    await db.commit()

    resp = await client.get("/blog/post-1")
    assert resp.status == 200
    html = await resp.text()
    assert "<title>Post 1 · The aiosite Blog</title>" in html
    assert "<p>The first paragraph of post 1.</p>" in html
    assert "<p>The second paragraph.</p>" in html
    assert (
        '<time datetime="2025-01-02T09:00:00+00:00">2 January 2025</time> &middot; '
        '<span class="author">ada</span>'
    ) in html
    # Tags in name order, each linking to its page.
    assert re.findall(r'<li><a href="/blog/tags/([a-z-]+)">', html) == ["aiohttp", "testing"]
    assert "2 comments" in html
    assert html.index("<strong>ken</strong>") < html.index("<strong>grace</strong>")
    assert "<p>Two paragraphs.</p>" in html
    assert "Second &lt;b&gt;!&lt;/b&gt;" in html  # escaped
    # Only the author and the editors are offered to edit it.
    assert "Edit this post" not in html
    # The navigation marks the blog as the current section.
    assert '<a href="/blog/" aria-current="true">Blog</a>' in html


async def test_a_missing_post_is_404(client: Client, db: AsyncSession) -> None:
    resp = await client.get("/blog/no-such-post")
    assert resp.status == 404
    assert "There is no post at “no-such-post”." in await resp.text()


async def test_comment_with_errors_comes_back_with_them(
    client: Client, db: AsyncSession, add_posts: AddPosts, log_in: LogIn
) -> None:
    await add_posts(1)
    await log_in("ada")
    token = await csrf_token(client)
    resp = await client.post("/blog/post-1/comments", data={"body": "  ", "csrf_token": token})
    assert resp.status == 400
    html = await resp.text()
    assert "<h4>The comment was not posted</h4>" in html
    assert '<a href="#comment-body">Write a comment.</a>' in html
    # The empty body is marked invalid and names its error.
    assert (
        '<textarea id="comment-body" name="body" rows="5" required '
        'aria-describedby="comment-body-error" aria-invalid="true"></textarea>'
    ) in html
    assert '<p class="field-error" id="comment-body-error">Write a comment.</p>' in html
    # The page around the form is all there.
    assert "<h1>Post 1</h1>" in html
    assert "Commenting as <strong>ada</strong>." in html
    assert (await db.execute(select(Comment))).first() is None

    resp = await client.post(
        "/blog/post-1/comments", data={"body": "x" * 5001, "csrf_token": token}
    )
    assert resp.status == 400
    assert "Keep the comment to 5000 characters; it has 5001." in await resp.text()


async def test_comment_on_a_missing_post_is_404(
    client: Client, db: AsyncSession, ada: User, log_in: LogIn
) -> None:
    await log_in("ada")
    data = {"body": "Hi", "csrf_token": await csrf_token(client)}
    resp = await client.post("/blog/nothing/comments", data=data)
    assert resp.status == 404


async def test_tag_page_lists_that_tags_published_posts_by_page(
    client: Client, add_posts: AddPosts, add_tag: AddTag
) -> None:
    tag = await add_tag("Async IO", "async-io")
    await add_posts(12, tags=[tag])
    await add_posts(3, first=13)  # untagged
    resp = await client.get("/blog/tags/async-io")
    assert resp.status == 200
    html = await resp.text()
    assert "<title>Posts tagged Async IO · The aiosite Blog</title>" in html
    assert "12 posts, newest first." in html
    assert titles(html) == [f"Post {n}" for n in range(12, 2, -1)]
    assert '<a class="step" rel="next" href="/blog/tags/async-io?page=2">' in html

    page2 = await (await client.get("/blog/tags/async-io?page=2")).text()
    assert titles(page2) == ["Post 2", "Post 1"]
    assert (await client.get("/blog/tags/async-io?page=3")).status == 404


async def test_unknown_tag_is_404(client: Client, db: AsyncSession) -> None:
    assert (await client.get("/blog/tags/nothing")).status == 404


async def test_blog_is_in_the_navigation(client: Client, db: AsyncSession) -> None:
    html = await (await client.get("/blog/")).text()
    assert '<a href="/blog/" aria-current="page">Blog</a>' in html
    assert '<a href="/">Home</a>' in html


async def test_post_and_stylesheet_link_from_the_list(client: Client, add_posts: AddPosts) -> None:
    await add_posts(1)
    html = await (await client.get("/blog/")).text()
    assert '<h2><a href="/blog/post-1">Post 1</a></h2>' in html
    assert '<p class="excerpt">The first paragraph of post 1.</p>' in html
    resp = await client.get("/static/blog/blog.css")
    assert resp.status == 200
    assert resp.content_type == "text/css"
