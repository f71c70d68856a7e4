"""What the site answers when a handler lets an upstream's failure escape: the error
page (JSON on API routes) for 502, 503 or 504 with a message for the visitor, and one
WARNING line for the log, with no traceback: the cause is outside the site's code."""

from __future__ import annotations

import logging
from typing import NoReturn

from aiohttp import web

from aiosite.hooks import Hooks
from aiosite.http.errors import CircuitOpen, OutboundRequestBlocked, UpstreamError

logger = logging.getLogger("aiosite.http")

_ANSWERS: dict[int, type[web.HTTPError]] = {
    502: web.HTTPBadGateway,
    503: web.HTTPServiceUnavailable,
    504: web.HTTPGatewayTimeout,
}


def upstream_failed(request: web.Request, exc: UpstreamError) -> NoReturn:
    answer = _ANSWERS.get(exc.status, web.HTTPBadGateway)
    logger.warning(
        "Upstream %s; answered %d to %s %s",
        exc.describe(),
        answer.status_code,
        request.method,
        request.path,
    )
    headers = {"Retry-After": exc.retry_after_header} if isinstance(exc, CircuitOpen) else None
    raise answer(text=exc.message, headers=headers)


def outbound_blocked(request: web.Request, exc: OutboundRequestBlocked) -> NoReturn:
    # Only a site built for tests raises it: the message goes into the answer too, so
    # that the failing test shows it whatever it looks at.
    logger.error("%s %s: %s", request.method, request.path, exc)
    raise web.HTTPInternalServerError(text=f"aiosite: {exc}")


def add_exception_handlers(hooks: Hooks) -> None:
    hooks.add_exception_handler(UpstreamError, upstream_failed)
    hooks.add_exception_handler(OutboundRequestBlocked, outbound_blocked)
