"""The JSON API: /api/posts (pages of published posts) and /api/posts/{id}."""

from datetime import datetime
from typing import Any

from blogsite.blog.models import Comment
from sqlalchemy.ext.asyncio import AsyncSession
from support import AddPosts, AddTag, AddUser, Client


async def get_json(client: Client, path: str, status: int = 200) -> Any:
    resp = await client.get(path)
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    return await resp.json()


async def test_posts_list_one_page_of_published_posts(
    client: Client, add_posts: AddPosts, add_tag: AddTag
) -> None:
    tag = await add_tag("aiohttp", "aiohttp")
    posts = await add_posts(25, tags=[tag])
    await add_posts(1, published=False, first=26)

    data = await get_json(client, "/api/posts")
    assert set(data) == {"items", "page", "pages", "total", "next", "previous"}
    assert (data["page"], data["pages"], data["total"]) == (1, 2, 25)
    assert (data["next"], data["previous"]) == ("/api/posts?page=2", None)
    assert [item["title"] for item in data["items"]] == [f"Post {n}" for n in range(25, 5, -1)]
    newest = posts[-1]
    assert data["items"][0] == {
        "id": newest.id,
        "title": "Post 25",
        "slug": "post-25",
        "author": "ada",
        "created": "2025-01-26T09:00:00+00:00",
        "published": True,
        "tags": ["aiohttp"],
        "url": f"/api/posts/{newest.id}",
    }
    assert datetime.fromisoformat(data["items"][0]["created"]).utcoffset() is not None

    page2 = await get_json(client, data["next"])
    assert [item["title"] for item in page2["items"]] == [f"Post {n}" for n in range(5, 0, -1)]
    assert (page2["page"], page2["next"], page2["previous"]) == (2, None, "/api/posts?page=1")


async def test_per_page_is_kept_within_1_to_100(client: Client, add_posts: AddPosts) -> None:
    await add_posts(3)
    data = await get_json(client, "/api/posts?per_page=2")
    assert (len(data["items"]), data["pages"], data["next"]) == (
        2,
        2,
        "/api/posts?page=2&per_page=2",
    )

    data = await get_json(client, "/api/posts?per_page=0")
    assert (len(data["items"]), data["pages"]) == (1, 3)
    assert data["next"] == "/api/posts?page=2&per_page=1"

    await add_posts(120, first=4)
    data = await get_json(client, "/api/posts?per_page=5000")
    assert (len(data["items"]), data["pages"], data["total"]) == (100, 2, 123)
    assert data["next"] == "/api/posts?page=2&per_page=100"

    error = await get_json(client, "/api/posts?per_page=lots", status=400)
    assert error["error"]["status"] == 400
    assert "per_page must be a whole number" in error["error"]["message"]


async def test_a_page_past_the_end_is_a_json_404(client: Client, db: AsyncSession) -> None:
    data = await get_json(client, "/api/posts")
    assert (data["items"], data["total"], data["pages"], data["next"]) == ([], 0, 1, None)
    for query in ("?page=2", "?page=x"):
        error = await get_json(client, f"/api/posts{query}", status=404)
        assert error["error"]["status"] == 404


async def test_one_post_with_its_body_and_comments(
    client: Client, db: AsyncSession, add_posts: AddPosts, add_tag: AddTag, add_user: AddUser
) -> None:
    (post,) = await add_posts(1, tags=[await add_tag("Testing", "testing")])
    ken = await add_user("ken")
    db.add_all(
        [
            Comment(
                post_id=post.id,
                author_id=ken.id,
                body="Later",
                created=post.created.replace(hour=12),
            ),
            # The comment of an account deleted since: no author.
            Comment(post_id=post.id, body="First", created=post.created.replace(hour=10)),
        ]
    )
    await db.commit()

    data = await get_json(client, f"/api/posts/{post.id}")
    assert data["title"] == "Post 1"
    assert data["body"] == "The first paragraph of post 1.\n\nThe second paragraph."
    assert data["tags"] == ["Testing"]
    assert data["url"] == f"/api/posts/{post.id}"
    assert data["html_url"] == "/blog/post-1"
    assert data["author"] == "ada"
    assert [(c["author"], c["body"]) for c in data["comments"]] == [
        (None, "First"),
        ("ken", "Later"),
    ]
    assert data["comments"][0]["created"] == "2025-01-02T10:00:00+00:00"


async def test_missing_or_draft_or_non_numeric_ids_are_json_404s(
    client: Client, add_posts: AddPosts
) -> None:
    (draft,) = await add_posts(1, published=False)
    for path in (
        f"/api/posts/{draft.id}",
        "/api/posts/999",
        "/api/posts/abc",
        "/api/posts/99999999999",
        "/api/nothing",
    ):
        error = await get_json(client, path, status=404)
        assert error["error"]["status"] == 404, path
        assert error["error"]["reason"] == "Not Found"
    error = await get_json(client, "/api/posts/999", status=404)
    assert error["error"]["message"] == "There is no published post with id 999."


async def test_stats_counts_published_posts_and_their_comments(
    client: Client, add_posts: AddPosts, db: AsyncSession
) -> None:
    assert await get_json(client, "/api/stats") == {"posts": 0, "comments": 0, "latest": None}

    posts = await add_posts(3)
    drafts = await add_posts(2, published=False, first=4)
    db.add_all(
        [
            Comment(post=posts[0], body="First."),
            Comment(post=posts[0], body="Second."),
            Comment(post=drafts[0], body="On a draft."),
        ]
    )
    await db.commit()

    data = await get_json(client, "/api/stats")
    assert (data["posts"], data["comments"]) == (3, 2)
    # The newest published post, as an aware UTC timestamp (not the newer drafts).
    assert datetime.fromisoformat(data["latest"]) == posts[-1].created
