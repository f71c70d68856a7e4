"""New posts announced live: /events/posts, a server-sent event per published post."""

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientResponse
from blogsite.blog.models import Post
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from support import Client, LogIn, PostForm

from aiosite import broadcast
from aiosite.contrib.auth import User

# Seconds an event may take to arrive.
WAIT = 5


def fields(title: str, *, published: bool = True) -> dict[str, str]:
    data = {"title": title, "slug": "", "body": "Some text.", "tags": ""}
    if published:
        data["published"] = "on"
    return data


@pytest.fixture
async def events(client: Client) -> AsyncIterator[ClientResponse]:
    """The event stream a page's banner (static/live.js) reads, once it is listening."""
    resp = await client.get("/events/posts")
    assert resp.status == 200
    assert resp.content_type == "text/event-stream"
    # The site subscribes before it starts the stream: by its first line (the retry
    # delay), a post published now is on it.
    async with asyncio.timeout(WAIT):
        assert (await resp.content.readline()).startswith(b"retry:")
    yield resp
    resp.close()


async def next_event(stream: ClientResponse) -> Any:
    """The data of the stream's next event (comments and ids skipped)."""
    async with asyncio.timeout(WAIT):
        while True:
            line = (await stream.content.readline()).decode()
            assert line, "the stream ended"
            if line.startswith("data:"):
                return json.loads(line.removeprefix("data:").strip())


@pytest.fixture(autouse=True)
async def logged_in(ada: User, log_in: LogIn) -> None:
    await log_in("ada")


async def post_id(db: AsyncSession, slug: str) -> int:
    return (await db.execute(select(Post.id).where(Post.slug == slug))).scalar_one()


async def test_publishing_a_post_sends_it_to_open_pages(
    db: AsyncSession, client: Client, post_form: PostForm, events: ClientResponse
) -> None:
    resp = await post_form("/blog/new", fields("Streaming <everything>"))
    assert (resp.status, resp.headers["Location"]) == (303, "/blog/streaming-everything")
    assert await next_event(events) == {
        "id": await post_id(db, "streaming-everything"),
        "title": "Streaming <everything>",
        "url": "/blog/streaming-everything",
    }


async def test_only_publishing_is_announced(
    db: AsyncSession, client: Client, post_form: PostForm, events: ClientResponse
) -> None:
    # A draft is not announced; publishing it is, once; editing a published post is not.
    assert (await post_form("/blog/new", fields("Draft first", published=False))).status == 303
    assert (await post_form("/blog/draft-first/edit", fields("Draft first"))).status == 303
    assert (await post_form("/blog/draft-first/edit", fields("Draft first"))).status == 303
    assert (await post_form("/blog/new", fields("Another one"))).status == 303
    # The events come in order: had the draft or the second edit been announced, it
    # would come before the next one here.
    assert (await next_event(events))["url"] == "/blog/draft-first"
    assert (await next_event(events))["url"] == "/blog/another-one"


async def test_a_post_is_saved_when_it_cannot_be_announced(
    db: AsyncSession, client: Client, post_form: PostForm, caplog: pytest.LogCaptureFixture
) -> None:
    # The hub is gone (as when its Redis is down): publishing raises ChannelUnavailable.
    await broadcast(client.app).close()
    with caplog.at_level(logging.WARNING, logger="blogsite.blog.views"):
        resp = await post_form("/blog/new", fields("Saved anyway"))
    assert (resp.status, resp.headers["Location"]) == (303, "/blog/saved-anyway")
    assert await post_id(db, "saved-anyway")
    page = await client.get("/blog/saved-anyway")
    assert "The post is saved." in await page.text()
    assert any("published but not announced" in r.getMessage() for r in caplog.records)
