"""The API's handlers: one or two queries each and a dict for orjson, nothing more.

Published posts only; a draft is a 404 here as if it did not exist. ``dashboard`` is
the exception: it reads no table but calls the site's upstream services (``http:`` in
config/default.yaml) at once, within one deadline.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.orm import defer, selectinload

from aiosite import (
    Prepared,
    budget,
    db_session,
    fast_path,
    gather_upstreams,
    json_response,
    paginate,
    service,
    url_for,
)
from aiosite.contrib.auth import User
from blogsite.blog.models import Comment, Post
from blogsite.blog.queries import SUMMARY, published_posts

PER_PAGE = 20
MAX_PER_PAGE = 100
# Seconds the dashboard waits for its upstreams, all of them together: what has not
# come back by then is left out (and named in "errors"), so the dashboard answers in
# about this long at most however slow an upstream is.
DASHBOARD_DEADLINE = 2.0
# The dashboard's parts: (service of http.services, path).
DASHBOARD = {
    "weather": ("weather", "/today"),
    "news": ("news", "/headlines"),
    "status": ("status", "/status"),
}


async def posts(request: web.Request) -> web.Response:
    """``GET /api/posts?page=2&per_page=50``: one page of posts, newest first."""
    per_page = _per_page(request.query.get("per_page"))
    statement = published_posts().options(
        # The list leaves out the bodies: a long post costs nothing here.
        defer(Post.body, raiseload=True),
        *SUMMARY,
    )
    page = await paginate(
        db_session(request), statement, page=request.query.get("page"), per_page=per_page
    )
    # per_page stays in the links only when the client chose it.
    chosen = per_page if "per_page" in request.query else None

    def link(number: int | None) -> str | None:
        if number is None:
            return None
        return url_for(request, "api:posts", page=number, per_page=chosen)

    return json_response(
        {
            "items": [_summary(request, post) for post in page.items],
            "page": page.number,
            "pages": page.pages,
            "total": page.total,
            "next": link(page.next_number),
            "previous": link(page.previous_number),
        }
    )


async def post(request: web.Request) -> web.Response:
    """``GET /api/posts/7``: the post with its body and comments."""
    post_id = int(request.match_info["id"])
    statement = (
        select(Post)
        .where(Post.id == post_id, Post.published)
        .options(*SUMMARY, selectinload(Post.comments).selectinload(Comment.author))
    )
    found = (await db_session(request).execute(statement)).scalar_one_or_none()
    if found is None:
        raise web.HTTPNotFound(text=f"There is no published post with id {post_id}.")
    data = _summary(request, found)
    data["body"] = found.body
    data["updated"] = found.updated
    data["html_url"] = url_for(request, "blog:detail", slug=found.slug)
    data["comments"] = [
        {"id": c.id, "author": _name(c.author), "body": c.body, "created": c.created}
        for c in found.comments
    ]
    return json_response(data)


# The fast data path (docs/performance.md): a statement built from the models, compiled
# once and, on PostgreSQL, run as a prepared statement straight on the driver.
STATS = Prepared(
    select(
        select(func.count())
        .select_from(Post)
        .where(Post.published)
        .scalar_subquery()
        .label("posts"),
        select(func.count())
        .select_from(Comment)
        .join(Post)
        .where(Post.published)
        .scalar_subquery()
        .label("comments"),
        select(func.max(Post.created)).where(Post.published).scalar_subquery().label("latest"),
    )
)


async def stats(request: web.Request) -> web.Response:
    """``GET /api/stats``: how many published posts and comments, and the newest post's
    date; polled by dashboards, so it skips the ORM session."""
    row = await fast_path(request).fetch_one(STATS)
    return json_response(
        {"posts": row["posts"], "comments": row["comments"], "latest": row["latest"]}
    )


# Each request fans out to every upstream at once: at most 50 of them per process (the
# next get 503 with Retry-After rather than piling onto slow upstreams), and 5 seconds
# in all, the upstreams' deadline included (docs/budgets.md).
@budget(timeout=5.0, concurrency=50)
async def dashboard(request: web.Request) -> web.Response:
    """``GET /api/dashboard``: ``{"results": {name: the upstream's JSON}, "errors":
    {name: {"status", "error"}}}``, what each upstream of ``DASHBOARD`` answered within
    ``DASHBOARD_DEADLINE``; the parts that failed or came too late are in ``errors``
    (502: it failed, 504: too late, 503: its circuit breaker is open)."""
    gathered = await gather_upstreams(
        request,
        {name: _upstream_json(request, *call) for name, call in DASHBOARD.items()},
        deadline=DASHBOARD_DEADLINE,
    )
    return json_response(gathered.as_json())


async def _upstream_json(request: web.Request, name: str, path: str) -> Any:
    """The JSON an upstream answers ``GET path`` with; a 4xx or a body that is not JSON
    is that upstream's failure (an ``UpstreamError``), not the dashboard's."""
    resp = await service(request, name).get(path)
    resp.raise_for_status()
    return resp.json()  # UpstreamUnavailable when the body is not JSON


def _summary(request: web.Request, post: Post) -> dict[str, Any]:
    # orjson writes the aware UTC datetimes as ISO 8601 (2025-03-01T09:30:00+00:00).
    return {
        "id": post.id,
        "title": post.title,
        "slug": post.slug,
        "author": _name(post.author),
        "created": post.created,
        "published": post.published,
        "tags": [tag.name for tag in post.tags],
        "url": url_for(request, "api:post", id=post.id),
    }


def _name(user: User | None) -> str | None:
    """An author's username; None once their account is deleted."""
    return user.username if user is not None else None


def _per_page(value: str | None) -> int:
    """``?per_page=``, kept within 1..MAX_PER_PAGE; text that is no number is a 400."""
    if value is None or value == "":
        return PER_PAGE
    try:
        number = int(value)
    except ValueError:
        raise web.HTTPBadRequest(text=f"per_page must be a whole number, not {value!r}.") from None
    return min(max(number, 1), MAX_PER_PAGE)
