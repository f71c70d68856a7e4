"""A post's comments: twenty a page, oldest first, counted with one query; and at most
five new comments a minute per user."""

import re
from datetime import timedelta

from blogsite.blog.models import Comment, Post
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from support import AddPosts, AddUser, Client, LogIn

from aiosite.contrib.auth import User
from aiosite.testing import csrf_token


def comment_bodies(html: str) -> list[str]:
    return re.findall(r"<p>(Comment \d+)</p>", html)


async def add_comments(db: AsyncSession, post: Post, author: User, count: int) -> None:
    db.add_all(
        Comment(
            post_id=post.id,
            author_id=author.id,
            body=f"Comment {n}",
            created=post.created + timedelta(minutes=n),
        )
        for n in range(1, count + 1)
    )
    await db.commit()


async def test_comments_come_twenty_a_page_oldest_first(
    client: Client, db: AsyncSession, add_posts: AddPosts, add_user: AddUser
) -> None:
    (post,) = await add_posts(1)
    await add_comments(db, post, await add_user("ken"), 25)

    html = await (await client.get("/blog/post-1")).text()
    assert comment_bodies(html) == [f"Comment {n}" for n in range(1, 21)]
    assert "25 comments" in html
    assert "Comments 1\u201320 of 25, oldest first." in html
    assert '<nav class="pagination" aria-label="Comment pages">' in html
    assert '<a class="step" rel="next" href="/blog/post-1?page=2#comments">Later' in html
    assert 'rel="prev"' not in html

    page2 = await (await client.get("/blog/post-1?page=2")).text()
    assert comment_bodies(page2) == [f"Comment {n}" for n in range(21, 26)]
    assert "25 comments" in page2
    assert "Comments 21\u201325 of 25, oldest first." in page2
    # Page 1 is linked without ?page=1, to the comments.
    assert '<a class="step" rel="prev" href="/blog/post-1#comments">' in page2
    assert 'aria-current="page" aria-label="Page 2"' in page2
    # The post itself is on every page.
    assert "<h1>Post 1</h1>" in page2


async def test_a_comment_page_that_does_not_exist_is_404(
    client: Client, db: AsyncSession, add_posts: AddPosts, add_user: AddUser
) -> None:
    (post,) = await add_posts(1)
    await add_comments(db, post, await add_user("ken"), 21)
    for query in ("?page=3", "?page=0", "?page=abc"):
        assert (await client.get(f"/blog/post-1{query}")).status == 404, query
    # One page of comments: no page links.
    await add_posts(1, first=2)
    html = await (await client.get("/blog/post-2")).text()
    assert 'class="pagination"' not in html


async def test_a_new_comment_lands_on_the_last_page(
    client: Client, db: AsyncSession, add_posts: AddPosts, add_user: AddUser, log_in: LogIn
) -> None:
    (post,) = await add_posts(1)
    ken = await add_user("ken")
    await add_comments(db, post, ken, 20)
    await log_in("ken")
    data = {"body": "The twenty-first.", "csrf_token": await csrf_token(client)}
    resp = await client.post("/blog/post-1/comments", data=data, allow_redirects=False)
    assert resp.status == 303
    added = (await db.execute(select(func.max(Comment.id)))).scalar_one()
    assert resp.headers["Location"] == f"/blog/post-1?page=2#comment-{added}"
    page2 = await (await client.get(resp.headers["Location"])).text()
    assert f'<article class="comment" id="comment-{added}">' in page2


async def test_a_user_posts_at_most_five_comments_a_minute(
    client: Client, db: AsyncSession, add_posts: AddPosts, add_user: AddUser, log_in: LogIn
) -> None:
    await add_posts(2)
    await add_user("ken")
    await add_user("grace")
    await log_in("ken")
    token = await csrf_token(client)
    for n in range(1, 6):
        # On any post: the limit is the user's, not the post's.
        data = {"body": f"Comment {n}", "csrf_token": token}
        resp = await client.post(f"/blog/post-{n % 2 + 1}/comments", data=data)
        assert resp.status == 200, n

    data = {"body": "One too many.", "csrf_token": token}
    refused = await client.post("/blog/post-1/comments", data=data)
    assert refused.status == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    html = await refused.text()
    # The form comes back with the comment kept and the wait.
    assert "<h4>The comment was not posted</h4>" in html
    assert "You are commenting too fast (5 per 1 minute): wait " in html
    assert ">One too many.</textarea>" in html
    count = select(func.count()).select_from(Comment)
    assert (await db.execute(count)).scalar_one() == 5

    # Another user has a budget of their own.
    client.session.cookie_jar.clear()
    await log_in("grace")
    data = {"body": "Grace's.", "csrf_token": await csrf_token(client)}
    resp = await client.post("/blog/post-1/comments", data=data, allow_redirects=False)
    assert resp.status == 303
    assert (await db.execute(count)).scalar_one() == 6
