"""aiosite's pytest plugin (installed with aiosite) provides the fixtures:

- ``site``: this project's site, built with config/default.yaml + config/test.yaml, on a
  test database of the run's own (migrated once, never the development database);
- ``client``: an aiohttp test client on it (``await client.get("/")``);
- ``db``: an ``AsyncSession`` on the test database, every table emptied first. Add rows,
  ``await db.commit()``, then request pages: the site sees what the test committed.

The fixtures below make blog rows for the tests.
"""

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from blogsite.blog.models import Post, Tag
from sqlalchemy.ext.asyncio import AsyncSession

START = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)

AddPosts = Callable[..., Awaitable[list[Post]]]


@pytest.fixture
def add_posts(db: AsyncSession) -> AddPosts:
    """``await add_posts(25)``: posts "Post 1" (oldest) to "Post 25", a day apart,
    committed; ``published=False`` for drafts, ``tags=[tag]``, ``first=26`` to go on."""

    async def add(
        count: int,
        *,
        published: bool = True,
        tags: Sequence[Tag] = (),
        first: int = 1,
    ) -> list[Post]:
        posts = [
            Post(
                title=f"Post {n}",
                slug=f"post-{n}",
                body=f"The first paragraph of post {n}.\n\nThe second paragraph.",
                author="Ada",
                published=published,
                created=START + timedelta(days=n),
                tags=list(tags),
            )
            for n in range(first, first + count)
        ]
        db.add_all(posts)
        await db.commit()
        return posts

    return add


@pytest.fixture
def add_tag(db: AsyncSession) -> Callable[[str, str], Awaitable[Tag]]:
    async def add(name: str, slug: str) -> Tag:
        tag = Tag(name=name, slug=slug)
        db.add(tag)
        await db.commit()
        return tag

    return add
