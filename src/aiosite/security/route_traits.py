"""``csrf_exempt`` and what the CSRF check learns about the handler of a request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from aiosite.handlers import handler_layers
from aiosite.keys import NO_ROUTE as NO_ROUTE_MARK
from aiosite.keys import STREAMS_BODY

EXEMPT = "aiosite_csrf_exempt"
H = TypeVar("H", bound=Callable[..., Any])


def csrf_exempt(handler: H) -> H:
    """Accept unsafe requests to this handler without a CSRF token or origin check.

    For webhooks and APIs authenticated by a token in a header rather than by the
    browser's cookies. Works on handler functions, on ``web.View`` classes and on their
    methods, and on top of decorators that use ``functools.wraps``.
    """
    setattr(handler, EXEMPT, True)
    return handler


@dataclass(frozen=True, slots=True)
class RouteTraits:
    routed: bool
    exempt: bool
    streams_body: bool


NO_ROUTE = RouteTraits(routed=False, exempt=False, streams_body=False)


def route_traits(request: web.Request) -> RouteTraits:
    """What the handler of ``request`` (and the decorators around it) says about CSRF."""
    match_info = request.match_info
    if match_info.http_exception is not None:
        return NO_ROUTE
    exempt = streams = False
    innermost: Any = None
    for layer in handler_layers(match_info.handler, request.method):
        exempt = exempt or bool(getattr(layer, EXEMPT, False))
        streams = streams or bool(getattr(layer, STREAMS_BODY, False))
        innermost = layer
    # The core's answer to a request no route matched: its 404 or 405 is more useful
    # than a CSRF refusal.
    if getattr(innermost, NO_ROUTE_MARK, False):
        return NO_ROUTE
    return RouteTraits(routed=True, exempt=exempt, streams_body=streams)
