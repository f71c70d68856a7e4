"""Request bodies declared larger than the route accepts are refused (413) before any of
their bytes is read, on every route.

aiohttp enforces ``client_max_size`` only while ``read()``/``post()`` read the body, so a
client declaring ``Content-Length: 10737418240`` on an ordinary form would hold its
connection until it had sent a megabyte. Routes that stream their body (uploads) check
their own, larger limits; ``max_body_size`` sets another limit for one route.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from aiosite.handlers import handler_layers
from aiosite.keys import MAX_BODY_SIZE, STREAMS_BODY

H = TypeVar("H", bound=Callable[..., Any])


def max_body_size(size: int | None) -> Callable[[H], H]:
    """Accept request bodies of up to ``size`` bytes on this route (None: any size).

    The site's limit is ``server.client_max_size``; a body declared larger is refused
    with 413 before it is read, and ``request.read()``, ``json()`` and ``post()`` read up
    to this size. ``None`` is for a handler that streams ``request.content`` and counts
    the bytes itself. Upload routes (``@accepts_uploads``) have their own limits.
    """
    if size is not None and size <= 0:
        raise ValueError("max_body_size: size must be a positive number of bytes, or None")

    def decorator(handler: H) -> H:
        setattr(handler, MAX_BODY_SIZE, size)
        return handler

    return decorator


def _route_limit(handler: Any, method: str, site_limit: int) -> int | None:
    """The route's own limit, else the site's; None for a route that streams its body
    and checks its own limits (upload routes)."""
    for layer in handler_layers(handler, method):
        if hasattr(layer, MAX_BODY_SIZE):
            size: int | None = getattr(layer, MAX_BODY_SIZE)
            return size
        if getattr(layer, STREAMS_BODY, False):
            return None
    return site_limit


class BodySizeLimit:
    """The request hook ``aiosite.body_size``: a request without a body (most of them)
    costs an attribute check."""

    def __init__(self, site_limit: int) -> None:
        self.site_limit = site_limit
        # Route limits found so far, by handler and method: one walk per route.
        self._limits: dict[tuple[Any, str], int | None] = {}

    def __call__(self, request: web.Request) -> None:
        if not request.body_exists:  # no body (Content-Length 0 included): nothing to read
            return
        declared = request.content_length
        limit = self.limit_for(request)
        if limit is None:
            return
        if limit != self.site_limit:
            # What read()/post() allow follows the route's limit, for a chunked body
            # too; aiohttp takes it only when the request is made, and has no setter.
            request._client_max_size = limit
        if declared is not None and declared > limit:
            raise web.HTTPRequestEntityTooLarge(
                max_size=limit,
                actual_size=declared,
                text=f"The request body is too large: this address accepts at most "
                f"{limit} bytes, and the request declares {declared}.",
            )

    def limit_for(self, request: web.Request) -> int | None:
        handler = request.match_info.handler
        key = (handler, request.method)
        try:
            return self._limits[key]
        except KeyError:
            pass
        limit = _route_limit(handler, request.method, self.site_limit)
        if len(self._limits) < 10_000:  # bounded: a client chooses the method on * routes
            self._limits[key] = limit
        return limit
