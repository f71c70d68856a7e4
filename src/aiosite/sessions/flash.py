"""Flash messages: notes for the next page a user sees ("Post saved."), kept in the
session until a template shows them."""

from __future__ import annotations

import aiohttp_session
from aiohttp import web
from aiohttp_session import SESSION_KEY

FLASHES = "_flashes"


async def flash(request: web.Request, message: str, category: str = "info") -> None:
    """Keep ``message`` for the next page rendered for this browser; ``category``
    (info, success, warning, error) becomes a CSS class in the base template."""
    session = await aiohttp_session.get_session(request)
    session[FLASHES] = [*session.get(FLASHES, ()), [category, message]]


async def get_flashed_messages(request: web.Request) -> list[tuple[str, str]]:
    """The ``(category, message)`` pairs waiting for this browser, removed as they are
    read."""
    session = await aiohttp_session.get_session(request)
    pending = session.pop(FLASHES, None)
    return [(str(category), str(message)) for category, message in pending or ()]


async def flashed_messages(request: web.Request) -> list[tuple[str, str]]:
    """``get_flashed_messages`` for the base template, which every page renders: a
    browser with no session cookie has none, and its session is not loaded."""
    if request.get(SESSION_KEY) is None and not _has_session_cookie(request):
        return []
    return await get_flashed_messages(request)


def _has_session_cookie(request: web.Request) -> bool:
    storage = request.get(aiohttp_session.STORAGE_KEY)
    return storage is not None and storage.cookie_name in request.cookies
