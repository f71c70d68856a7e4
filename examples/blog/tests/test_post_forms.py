"""Writing and editing posts: plain HTML forms, errors shown next to their fields."""

import re
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.test_utils import TestClient
from blogsite.blog.models import Post, Tag
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

Client = TestClient[web.Request, web.Application]
AddPosts = Callable[..., Awaitable[list[Post]]]
AddTag = Callable[[str, str], Awaitable[Tag]]

VALID = {
    "title": "Streaming responses",
    "slug": "",
    "author": "Grace",
    "body": "aiohttp streams.\r\n\r\nSo can you.",
    "tags": "aiohttp, Async IO,  aiohttp ",
    "published": "on",
}


async def count(db: AsyncSession, model: type[Post] | type[Tag]) -> int:
    return (await db.execute(select(func.count()).select_from(model))).scalar_one()


async def stored_post(db: AsyncSession, slug: str) -> Post:
    statement = (
        select(Post)
        .where(Post.slug == slug)
        .options(selectinload(Post.tags))
        .execution_options(populate_existing=True)
    )
    return (await db.execute(statement)).scalar_one()


def field_value(html: str, name: str) -> str:
    found = re.search(rf'<input id="{name}" name="{name}" type="text" value="([^"]*)"', html)
    assert found, f"no input {name}"
    return found.group(1)


async def test_new_post_form(client: Client, db: AsyncSession) -> None:
    resp = await client.get("/blog/new")
    assert resp.status == 200
    html = await resp.text()
    assert "<title>New post · The aiosite Blog</title>" in html
    assert '<form class="form post-form" method="post" action="/blog/new" novalidate>' in html
    for name, label in [("title", "Title"), ("slug", "Slug"), ("body", "Text"), ("tags", "Tags")]:
        assert f'<label for="{name}">{label}' in html
    assert '<input id="published" name="published" type="checkbox" value="on"' in html
    assert 'aria-describedby="slug-hint"' in html
    assert "aria-invalid" not in html
    assert 'class="error-summary"' not in html


async def test_errors_come_back_next_to_their_fields_with_the_values_typed(
    client: Client, db: AsyncSession
) -> None:
    data = {"title": "", "slug": "Not a slug!", "body": "  ", "tags": "ok, <>", "author": "Ann"}
    resp = await client.post("/blog/new", data=data)
    assert resp.status == 400
    html = await resp.text()
    assert "<h2>The post was not saved</h2>" in html
    assert '<a href="#title">Enter a title.</a>' in html
    assert '<p class="field-error" id="title-error">Enter a title.</p>' in html
    assert "Use lowercase letters, digits and single hyphens between them" in html
    assert '<p class="field-error" id="body-error">Write the post.</p>' in html
    assert "A tag needs a letter or digit; “&lt;&gt;” has none." in html
    # Each refused field says so, and names its hint and its error.
    assert 'aria-describedby="title-error" aria-invalid="true"' in html
    assert 'aria-describedby="slug-hint slug-error" aria-invalid="true"' in html
    assert 'aria-describedby="body-hint body-error" aria-invalid="true"' in html
    assert 'id="author" name="author" type="text" value="Ann" maxlength="100"' in html
    # What was typed is kept, escaped.
    assert field_value(html, "slug") == "Not a slug!"
    assert field_value(html, "tags") == "ok, &lt;&gt;"
    assert field_value(html, "author") == "Ann"
    assert (
        '<input id="published" name="published" type="checkbox" value="on" aria-describedby' in html
    )
    assert await count(db, Post) == 0
    assert await count(db, Tag) == 0


async def test_title_length_and_reserved_slug(client: Client, db: AsyncSession) -> None:
    resp = await client.post("/blog/new", data={**VALID, "title": "x" * 201})
    assert resp.status == 400
    assert "Keep the title to 200 characters; it has 201." in await resp.text()

    resp = await client.post("/blog/new", data={**VALID, "slug": "new"})
    assert resp.status == 400
    assert "“new” is the address of another page; choose another slug." in await resp.text()
    assert await count(db, Post) == 0


async def test_a_post_is_created_with_its_tags(
    client: Client, db: AsyncSession, add_tag: AddTag
) -> None:
    await add_tag("aiohttp", "aiohttp")
    resp = await client.post("/blog/new", data=VALID, allow_redirects=False)
    assert resp.status == 303
    # No slug typed: made from the title.
    assert resp.headers["Location"] == "/blog/streaming-responses"

    post = await stored_post(db, "streaming-responses")
    assert (post.title, post.author, post.published) == ("Streaming responses", "Grace", True)
    assert post.body == "aiohttp streams.\n\nSo can you."
    # The existing tag is reused, the new one made; a repeated name counts once.
    assert [(tag.name, tag.slug) for tag in post.tags] == [
        ("aiohttp", "aiohttp"),
        ("Async IO", "async-io"),
    ]
    assert await count(db, Tag) == 2

    html = await (await client.get("/blog/streaming-responses")).text()
    assert "<h1>Streaming responses</h1>" in html
    assert "<p>So can you.</p>" in html
    assert "Post 1" not in html


async def test_an_unchecked_box_saves_a_draft(client: Client, db: AsyncSession) -> None:
    data = {key: value for key, value in VALID.items() if key != "published"}
    resp = await client.post("/blog/new", data={**data, "slug": "draft"}, allow_redirects=False)
    assert resp.status == 303
    assert (await stored_post(db, "draft")).published is False


async def test_a_duplicate_slug_gives_the_form_back_not_a_500(
    client: Client, db: AsyncSession, add_posts: AddPosts
) -> None:
    await add_posts(1)  # at post-1
    data = {**VALID, "slug": "post-1", "tags": "brand new tag"}
    resp = await client.post("/blog/new", data=data, allow_redirects=False)
    assert resp.status == 400
    html = await resp.text()
    assert (
        '<p class="field-error" id="slug-error">A post with this slug already exists.</p>' in html
    )
    assert '<a href="#slug">A post with this slug already exists.</a>' in html
    assert field_value(html, "slug") == "post-1"
    assert field_value(html, "title") == "Streaming responses"
    # Nothing was written: not the post, and not the tag made before the post failed.
    assert await count(db, Post) == 1
    assert await count(db, Tag) == 0
    assert (await stored_post(db, "post-1")).title == "Post 1"

    # The site is fine afterwards: the same form with a free slug saves.
    resp = await client.post("/blog/new", data={**data, "slug": "post-2"}, allow_redirects=False)
    assert resp.status == 303
    assert await count(db, Post) == 2


async def test_edit_form_is_filled_in(client: Client, add_posts: AddPosts, add_tag: AddTag) -> None:
    tags = [await add_tag("Testing", "testing"), await add_tag("aiohttp", "aiohttp")]
    await add_posts(1, tags=tags)
    resp = await client.get("/blog/post-1/edit")
    assert resp.status == 200
    html = await resp.text()
    assert "<title>Edit post · The aiosite Blog</title>" in html
    assert 'action="/blog/post-1/edit"' in html
    assert field_value(html, "title") == "Post 1"
    assert field_value(html, "slug") == "post-1"
    assert field_value(html, "tags") == "aiohttp, Testing"
    assert ">The first paragraph of post 1.\n\nThe second paragraph.</textarea>" in html
    assert 'type="checkbox" value="on" checked' in html
    assert '<a href="/blog/post-1">Cancel</a>' in html


async def test_edit_saves_and_moves_the_post(
    client: Client, db: AsyncSession, add_posts: AddPosts, add_tag: AddTag
) -> None:
    old = await add_tag("Old", "old")
    await add_posts(1, tags=[old, await add_tag("Kept", "kept")])
    data = {"title": "Renamed", "slug": "renamed", "body": "New text.", "tags": "kept, fresh"}
    resp = await client.post("/blog/post-1/edit", data=data, allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/blog/renamed"

    post = await stored_post(db, "renamed")
    assert (post.title, post.body, post.author, post.published) == (
        "Renamed",
        "New text.",
        "",
        False,
    )
    assert [tag.slug for tag in post.tags] == ["fresh", "kept"]
    assert post.updated > post.created
    assert (await client.get("/blog/post-1")).status == 404
    # A tag no longer used stays, for other posts to use.
    assert await count(db, Tag) == 3


async def test_edit_errors_and_a_taken_slug(
    client: Client, db: AsyncSession, add_posts: AddPosts
) -> None:
    await add_posts(2)
    resp = await client.post("/blog/post-1/edit", data={"title": "", "slug": "post-1", "body": "x"})
    assert resp.status == 400
    assert "Enter a title." in await resp.text()

    data = {"title": "Taken", "slug": "post-2", "body": "Text."}
    resp = await client.post("/blog/post-1/edit", data=data)
    assert resp.status == 400
    html = await resp.text()
    assert "A post with this slug already exists." in html
    # The form still posts to the post being edited, under its old address.
    assert 'action="/blog/post-1/edit"' in html
    assert '<a href="/blog/post-1">Cancel</a>' in html
    assert (await stored_post(db, "post-1")).title == "Post 1"


async def test_editing_a_missing_post_is_404(client: Client, db: AsyncSession) -> None:
    assert (await client.get("/blog/nothing/edit")).status == 404
    assert (await client.post("/blog/nothing/edit", data=VALID)).status == 404
