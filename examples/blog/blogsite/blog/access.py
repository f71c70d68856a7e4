"""Who may do what with a post: one place for the rules the pages and files follow.

- Anyone reads a published post and its attachments.
- A draft, and its attachments, are seen only by those who may edit it: to anybody
  else it does not exist (404, not 403, so that its address gives nothing away).
- The author edits their own posts; staff, and users granted ``blog.change_post``
  (``aiosite grant --user grace blog.change_post``), edit every post.
"""

from __future__ import annotations

from aiohttp import web

from aiosite.contrib.auth import current_user, user_has_perm

from .models import Post

EDIT_ANY_POST = "blog.change_post"


async def can_edit(request: web.Request, post: Post) -> bool:
    user = await current_user(request)
    if not user.is_authenticated:
        return False
    if post.author_id is not None and post.author_id == user.id:
        return True
    return user.is_staff or await user_has_perm(request, EDIT_ANY_POST)


async def can_see(request: web.Request, post: Post) -> bool:
    return post.published or await can_edit(request, post)


async def check_can_see(request: web.Request, post: Post) -> None:
    if not await can_see(request, post):
        raise web.HTTPNotFound(text=f"There is no post at “{post.slug}”.")


async def check_can_edit(request: web.Request, post: Post) -> None:
    """404 for a draft the user may not see, 403 for a post they may only read."""
    if await can_edit(request, post):
        return
    if not post.published:
        raise web.HTTPNotFound(text=f"There is no post at “{post.slug}”.")
    raise web.HTTPForbidden(text="Only the author of this post and the editors can change it.")
