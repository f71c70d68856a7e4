"""A rate-limit key for sites with users: ``@rate_limit("5/minute", key=by_user_or_address)``.

A signed-in user has one budget wherever they connect from (several users behind one
office address do not share it); an anonymous visitor is counted by address.
"""

from __future__ import annotations

from aiohttp import web

from aiosite import by_address

from .users import current_user


async def by_user_or_address(request: web.Request) -> str:
    """``user:<id>`` for a signed-in user, else ``address:<ip>`` (``aiosite.by_address``)."""
    user = await current_user(request)
    if user.is_authenticated:
        return f"user:{user.id}"
    return by_address(request)
