"""What a handler is called with, for decorators that go on handler functions and on the
methods of a ``web.View`` alike (``@template``, ``@accepts_uploads``, ``@rate_limit``,
``@login_required``...)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web


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
