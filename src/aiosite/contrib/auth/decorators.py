"""``@login_required`` and ``@permission_required(...)`` for handlers and view methods.

Anonymous visitors of a page are sent to ``auth.login_url`` with ``?next=`` the page
they asked for; API clients (routes whose errors are JSON) get 401 instead. A logged-in
user without the permission gets 403.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from aiohttp import web

from aiosite import request_of, wants_json

from .config import auth_settings
from .permissions import UnknownPermission, check_known
from .redirects import resolve, with_next
from .state import site_permissions
from .users import current_user, user_has_perm

P = ParamSpec("P")
R = TypeVar("R")


def login_required(handler: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Only logged-in users reach ``handler`` (a function handler or a method of a
    ``web.View``); anonymous visitors are sent to log in."""

    @functools.wraps(handler)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        request = request_of(args, decorator="@login_required", handler=handler)
        user = await current_user(request)
        if not user.is_authenticated:
            raise login_needed(request)
        return await handler(*args, **kwargs)

    return wrapper


def permission_required(
    *perms: str,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """Only users with every one of ``perms`` (``"blog.change_post"``) reach the
    handler: anonymous visitors are sent to log in, others get 403."""
    if not perms:
        raise TypeError('permission_required needs a permission, e.g. "blog.change_post"')

    def decorator(handler: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        @functools.wraps(handler)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            request = request_of(args, decorator="@permission_required", handler=handler)
            user = await current_user(request)
            if not user.is_authenticated:
                raise login_needed(request)
            try:
                check_known(perms, site_permissions(request))
            except UnknownPermission as exc:
                # A misspelt name would quietly refuse everybody but superusers.
                raise RuntimeError(
                    f"@permission_required on {handler.__qualname__}: {exc}"
                ) from None
            for perm in perms:
                if not await user_has_perm(request, perm):
                    raise web.HTTPForbidden(text="You do not have permission to do this.")
            return await handler(*args, **kwargs)

        return wrapper

    return decorator


def login_needed(request: web.Request, next_path: str | None = None) -> web.HTTPException:
    """What to answer an anonymous request that must log in: a redirect to the login
    page with ``next`` (``next_path``, or the page asked for), or 401 for API clients.

    Raise it from a handler that checks for a user itself, e.g. a POST-only route whose
    own page is not worth coming back to.
    """
    if wants_json(request):
        return web.HTTPUnauthorized(text="Log in to do this.")
    login_url = resolve(request, auth_settings(request).login_url)
    return web.HTTPSeeOther(
        with_next(login_url, request.path_qs if next_path is None else next_path)
    )
