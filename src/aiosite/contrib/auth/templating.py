"""What templates see: ``user`` on every page, and ``has_perm("blog.change_post")``."""

from __future__ import annotations

from typing import Any

import jinja2
from aiohttp import web

from .users import current_user, user_has_perm


async def user_context(request: web.Request) -> dict[str, Any]:
    """The context processor: ``{{ user.username }}``, ``{% if user.is_authenticated %}``."""
    return {"user": await current_user(request)}


@jinja2.pass_context
async def has_perm_global(ctx: Any, perm: str) -> bool:
    """``{% if has_perm("blog.change_post") %}``: loads the user's permissions once."""
    return await user_has_perm(ctx["request"], perm)
