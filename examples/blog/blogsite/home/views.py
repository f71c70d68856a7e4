"""The home app's handlers: plain aiohttp handlers, rendered by ``@template``."""

from typing import Any

from aiohttp import web

from aiosite import db_session, stream_channel, template
from blogsite.blog.queries import latest_posts
from blogsite.blog.views import POSTS_CHANNEL

LATEST_POSTS = 3


@template("home/index.html")
async def index(request: web.Request) -> dict[str, Any]:
    return {
        "heading": "Notes on building async sites",
        "latest_posts": await latest_posts(db_session(request), LATEST_POSTS),
    }


@template("home/about.html")
async def about(request: web.Request) -> dict[str, Any]:
    return {
        "heading": "About this blog",
        # What the example grows into, one release at a time.
        "features": [
            ("Pages and navigation", "templates, static files, named routes", True),
            ("Posts, comments and tags", "the database layer, forms and a JSON API", True),
            ("Accounts", "sign-up, login, sessions and who may edit what", True),
            ("Attachments", "images and files uploaded with a post", True),
            ("An admin", "pages to manage every table", False),
            ("Live chat", "websockets and the broadcast hub", True),
            ("New posts announced live", "server-sent events", True),
            ("A dashboard API", "calls to other services, at once, within a deadline", True),
        ],
    }


async def post_events(request: web.Request) -> web.StreamResponse:
    """``/events/posts``: a server-sent event ``{"id", "title", "url"}`` for each post
    published from now on (the blog's _save publishes them)."""
    return await stream_channel(request, POSTS_CHANNEL)
