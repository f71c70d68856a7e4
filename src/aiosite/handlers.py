"""What a handler is called with, for decorators that go on handler functions and on the
methods of a ``web.View`` alike (``@template``, ``@accepts_uploads``, ``@rate_limit``,
``@login_required``...), and where the markers such decorators leave are found."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from aiohttp import web

from aiosite.keys import NO_ROUTE

# How many decorators deep a handler is searched for markers.
_MAX_DEPTH = 32
# The label of a request that matched no route.
UNMATCHED = "<unmatched>"


def request_of(
    args: Sequence[Any],
    *,
    decorator: str = "this decorator",
    handler: Callable[..., Any] | None = None,
) -> web.Request:
    """The request of a handler call, from its positional arguments: the first one is the
    request (a handler function) or the ``web.View`` (a view method), whose ``request``
    it is::

        def audited(handler):
            @functools.wraps(handler)
            async def wrapper(*args, **kwargs):
                request = request_of(args, decorator="@audited", handler=handler)
                ...
                return await handler(*args, **kwargs)

            return wrapper

    Anything else raises TypeError naming ``decorator`` and ``handler``.
    """
    first = args[0] if args else None
    if isinstance(first, web.Request):
        return first
    if isinstance(first, web.View):
        return first.request
    where = f"{handler.__qualname__}: " if handler is not None else ""
    raise TypeError(
        f"{where}{decorator} goes on handlers that take the request, or on the methods "
        f"of a web.View (its first argument was {type(first).__name__})"
    )


def handler_layers(handler: Any, method: str) -> Iterator[Any]:
    """The handler of a route and what it wraps, outermost first (decorators that use
    ``functools.wraps``), with a ``web.View`` class's method for ``method`` before the
    class itself: where the route's markers (``csrf_exempt``, ``max_body_size``,
    ``budget``...) are looked for."""
    target = handler
    for _ in range(_MAX_DEPTH):
        if isinstance(target, type) and issubclass(target, web.View):
            yield getattr(target, method.lower(), None)
        yield target
        target = getattr(target, "__wrapped__", None)
        if target is None:
            return


def route_label(route: web.AbstractRoute | None) -> str:
    """How metrics and logs name a route: its name ("blog:detail"), else its path
    pattern ("/items/{id}"), else "<unmatched>" (no route, or the core's 404/405
    fallback). Never the request's path, which would make a series per URL a client
    invents."""
    if route is None or getattr(route.handler, NO_ROUTE, False):
        return UNMATCHED
    resource = route.resource
    if resource is None:
        return UNMATCHED
    return resource.name or resource.canonical or UNMATCHED
