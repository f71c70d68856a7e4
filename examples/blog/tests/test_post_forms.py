"""Writing and editing posts: plain HTML forms, errors shown next to their fields.

Every test here is logged in as ada, who writes the posts (see test_accounts.py for who
may write and edit what). The form is multipart (it takes files): ``post_form`` sends it
as a browser does.
"""

import re

import pytest
from blogsite.blog.models import Post, Tag
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from support import AddPosts, AddTag, AddUser, Client, LogIn, PostForm

from aiosite.contrib.auth import User
from aiosite.testing import csrf_headers

VALID = {
    "title": "Streaming responses",
    "slug": "",
    "body": "aiohttp streams.\r\n\r\nSo can you.",
    "tags": "aiohttp, Async IO,  aiohttp ",
    "published": "on",
}


@pytest.fixture(autouse=True)
async def logged_in(ada: User, log_in: LogIn) -> None:
    await log_in("ada")


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


async def test_new_post_form(client: Client) -> None:
    resp = await client.get("/blog/new")
    assert resp.status == 200
    html = await resp.text()
    assert "<title>New post · The aiosite Blog</title>" in html
    assert (
        '<form class="form post-form" method="post" action="/blog/new" '
        'enctype="multipart/form-data" novalidate>\n  <input type="hidden" name="csrf_token"'
    ) in html
    for name, label in [("title", "Title"), ("slug", "Slug"), ("body", "Text"), ("tags", "Tags")]:
        assert f'<label for="{name}">{label}' in html
    # No author field: the post is the logged-in user's.
    assert 'name="author"' not in html
    assert '<input id="published" name="published" type="checkbox" value="on"' in html
    assert (
        '<input id="attachments" name="attachments" type="file" multiple '
        'accept="image/png,image/jpeg,image/gif,image/webp,application/pdf,text/plain" '
        'aria-describedby="attachments-hint">'
    ) in html
    assert "Up to 5 files, 5 MB in all." in html
    assert 'aria-describedby="slug-hint"' in html
    assert "aria-invalid" not in html
    assert 'class="error-summary"' not in html


async def test_errors_come_back_next_to_their_fields_with_the_values_typed(
    db: AsyncSession, client: Client, post_form: PostForm
) -> None:
    data = {"title": "", "slug": "Not a slug!", "body": "  ", "tags": "ok, <>"}
    resp = await post_form("/blog/new", data)
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
    # What was typed is kept, escaped.
    assert field_value(html, "slug") == "Not a slug!"
    assert field_value(html, "tags") == "ok, &lt;&gt;"
    assert (
        '<input id="published" name="published" type="checkbox" value="on" aria-describedby' in html
    )
    assert await count(db, Post) == 0
    assert await count(db, Tag) == 0


async def test_title_length_and_reserved_slug(
    db: AsyncSession, client: Client, post_form: PostForm
) -> None:
    resp = await post_form("/blog/new", {**VALID, "title": "x" * 201})
    assert resp.status == 400
    assert "Keep the title to 200 characters; it has 201." in await resp.text()

    resp = await post_form("/blog/new", {**VALID, "slug": "new"})
    assert resp.status == 400
    assert "“new” is the address of another page; choose another slug." in await resp.text()
    assert await count(db, Post) == 0


async def test_a_post_is_created_with_its_tags_as_the_logged_in_user(
    db: AsyncSession, client: Client, post_form: PostForm, add_tag: AddTag, ada: User
) -> None:
    await add_tag("aiohttp", "aiohttp")
    resp = await post_form("/blog/new", VALID)
    assert resp.status == 303
    # No slug typed: made from the title.
    assert resp.headers["Location"] == "/blog/streaming-responses"

    post = await stored_post(db, "streaming-responses")
    assert (post.title, post.author_id, post.published) == ("Streaming responses", ada.id, True)
    assert post.body == "aiohttp streams.\n\nSo can you."
    # The existing tag is reused, the new one made; a repeated name counts once.
    assert [(tag.name, tag.slug) for tag in post.tags] == [
        ("aiohttp", "aiohttp"),
        ("Async IO", "async-io"),
    ]
    assert await count(db, Tag) == 2

    html = await (await client.get("/blog/streaming-responses")).text()
    assert '<p class="flash flash-success">The post is saved.</p>' in html
    assert "<h1>Streaming responses</h1>" in html
    assert "<p>So can you.</p>" in html
    assert '&middot; <span class="author">ada</span>' in html
    # The flash message is shown once.
    html = await (await client.get("/blog/streaming-responses")).text()
    assert "The post is saved." not in html


async def test_an_author_field_sent_anyway_changes_nothing(
    db: AsyncSession, client: Client, post_form: PostForm, add_user: AddUser
) -> None:
    other = await add_user("mallory")
    resp = await post_form("/blog/new", {**VALID, "author_id": str(other.id), "author": "x"})
    assert resp.status == 303
    post = await stored_post(db, "streaming-responses")
    assert post.author_id != other.id


async def test_an_unchecked_box_saves_a_draft(
    db: AsyncSession, client: Client, post_form: PostForm
) -> None:
    data = {key: value for key, value in VALID.items() if key != "published"}
    resp = await post_form("/blog/new", {**data, "slug": "draft"})
    assert resp.status == 303
    assert (await stored_post(db, "draft")).published is False


async def test_a_duplicate_slug_gives_the_form_back_not_a_500(
    db: AsyncSession, client: Client, post_form: PostForm, add_posts: AddPosts
) -> None:
    await add_posts(1)  # at post-1
    data = {**VALID, "slug": "post-1", "tags": "brand new tag"}
    resp = await post_form("/blog/new", data)
    assert resp.status == 400
    html = await resp.text()
    assert (
        '<p class="field-error" id="slug-error">A post with this slug already exists.</p>' in html
    )
    assert '<a href="#slug">A post with this slug already exists.</a>' in html
    assert field_value(html, "slug") == "post-1"
    assert field_value(html, "title") == "Streaming responses"
    # The page around the form still knows who is logged in.
    assert '<span class="username" title="Logged in as ada">ada</span>' in html
    # Nothing was written: not the post, and not the tag made before the post failed.
    assert await count(db, Post) == 1
    assert await count(db, Tag) == 0
    assert (await stored_post(db, "post-1")).title == "Post 1"

    # The site is fine afterwards: the same form with a free slug saves.
    resp = await post_form("/blog/new", {**data, "slug": "post-2"})
    assert resp.status == 303
    assert await count(db, Post) == 2


async def test_edit_form_is_filled_in(client: Client, add_posts: AddPosts, add_tag: AddTag) -> None:
    tags = [await add_tag("Testing", "testing"), await add_tag("aiohttp", "aiohttp")]
    await add_posts(1, tags=tags)
    resp = await client.get("/blog/post-1/edit")
    assert resp.status == 200
    html = await resp.text()
    assert "<title>Edit post · The aiosite Blog</title>" in html
    assert 'action="/blog/post-1/edit" enctype="multipart/form-data"' in html
    assert field_value(html, "title") == "Post 1"
    assert field_value(html, "slug") == "post-1"
    assert field_value(html, "tags") == "aiohttp, Testing"
    assert ">The first paragraph of post 1.\n\nThe second paragraph.</textarea>" in html
    assert 'type="checkbox" value="on" checked' in html
    assert '<a href="/blog/post-1">Cancel</a>' in html
    # No files yet: no list of them.
    assert "Attached files" not in html


async def test_edit_saves_and_moves_the_post(
    db: AsyncSession,
    client: Client,
    post_form: PostForm,
    add_posts: AddPosts,
    add_tag: AddTag,
    ada: User,
) -> None:
    old = await add_tag("Old", "old")
    await add_posts(1, tags=[old, await add_tag("Kept", "kept")])
    data = {"title": "Renamed", "slug": "renamed", "body": "New text.", "tags": "kept, fresh"}
    resp = await post_form("/blog/post-1/edit", data)
    assert resp.status == 303
    assert resp.headers["Location"] == "/blog/renamed"

    post = await stored_post(db, "renamed")
    assert (post.title, post.body, post.author_id, post.published) == (
        "Renamed",
        "New text.",
        ada.id,
        False,
    )
    assert [tag.slug for tag in post.tags] == ["fresh", "kept"]
    assert post.updated > post.created
    assert (await client.get("/blog/post-1")).status == 404
    # A tag no longer used stays, for other posts to use.
    assert await count(db, Tag) == 3


async def test_edit_errors_and_a_taken_slug(
    db: AsyncSession, client: Client, post_form: PostForm, add_posts: AddPosts
) -> None:
    await add_posts(2)
    resp = await post_form("/blog/post-1/edit", {"title": "", "slug": "post-1", "body": "x"})
    assert resp.status == 400
    assert "Enter a title." in await resp.text()

    data = {"title": "Taken", "slug": "post-2", "body": "Text."}
    resp = await post_form("/blog/post-1/edit", data)
    assert resp.status == 400
    html = await resp.text()
    assert "A post with this slug already exists." in html
    # The form still posts to the post being edited, under its old address.
    assert 'action="/blog/post-1/edit"' in html
    assert '<a href="/blog/post-1">Cancel</a>' in html
    assert (await stored_post(db, "post-1")).title == "Post 1"


async def test_editing_a_missing_post_is_404(
    db: AsyncSession, client: Client, post_form: PostForm
) -> None:
    assert (await client.get("/blog/nothing/edit")).status == 404
    assert (await post_form("/blog/nothing/edit", VALID)).status == 404


async def test_a_form_that_is_not_multipart_is_refused(db: AsyncSession, client: Client) -> None:
    resp = await client.post("/blog/new", data=VALID, headers=await csrf_headers(client))
    assert resp.status == 415
    assert "multipart/form-data" in await resp.text()
    assert await count(db, Post) == 0
