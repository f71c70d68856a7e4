"""The home app's handlers: plain aiohttp handlers, rendered by ``@template``."""

from typing import Any

from aiohttp import web

from aiosite import template


@template("home/index.html")
async def index(request: web.Request) -> dict[str, Any]:
    return {"heading": "Notes on building async sites"}


@template("home/about.html")
async def about(request: web.Request) -> dict[str, Any]:
    return {
        "heading": "About this blog",
        # What the example grows into, one release at a time.
        "features": [
            ("Pages and navigation", "templates, static files, named routes", True),
            ("Posts and comments", "the database layer and the admin", False),
            ("Accounts", "sign-up, login and sessions", False),
            ("Live chat", "websockets and the broadcast hub", False),
        ],
    }
