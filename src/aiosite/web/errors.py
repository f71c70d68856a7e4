"""Error pages: 4xx/5xx rendered from overridable templates, or JSON for API clients."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from aiohttp import hdrs, web

from aiosite.exceptions import one_line
from aiosite.hooks import HOOKS
from aiosite.web.mounted import ROUTES
from aiosite.web.responses import json_response
from aiosite.web.templates import TEMPLATES

logger = logging.getLogger("aiosite.request")

_DROPPED_HEADERS = frozenset({hdrs.CONTENT_TYPE, hdrs.CONTENT_LENGTH, hdrs.CONTENT_ENCODING})


def wants_json(request: web.Request) -> bool:
    """Whether errors for this request are JSON: an API route or app, or a client that
    asks for JSON and not HTML."""
    routes = request.config_dict.get(ROUTES)
    if routes is not None and routes.is_api(request):
        return True
    accept = request.headers.get(hdrs.ACCEPT, "")
    return "json" in accept and "text/html" not in accept


def _custom_message(exc: web.HTTPException) -> str | None:
    text = exc.text
    if not text or text == f"{exc.status}: {exc.reason}":
        return None
    return text


async def error_response(
    request: web.Request,
    status: int,
    exc: web.HTTPException | None = None,
) -> web.Response:
    """The site's page (or JSON body) for an HTTP error ``status``: the project's or an
    app's ``<status>.html``, else ``error.html``; the message of ``exc`` when it has one."""
    reason = exc.reason if exc is not None else HTTPStatus(status).phrase
    message = _custom_message(exc) if exc is not None else None
    headers: dict[str, str] = {}
    if exc is not None:
        headers = {k: v for k, v in exc.headers.items() if k not in _DROPPED_HEADERS}
    if wants_json(request):
        body = {"error": {"status": status, "reason": reason, "message": message}}
        return json_response(body, status=status, headers=headers)
    context = {"status": status, "reason": reason, "message": message}
    return await render_page(request, [f"{status}.html", "error.html"], context, status, headers)


async def render_page(
    request: web.Request,
    names: Sequence[str],
    context: Mapping[str, Any],
    status: int,
    headers: Mapping[str, str],
) -> web.Response:
    """An error page from the first of ``names``; plain text when it cannot render.

    A failure of an outage type (``Hooks.add_outage_type``: a database that cannot be
    reached) is no template bug: its marker marks the request, so that context
    processors leave that service alone, and the page is rendered once more; a second
    such failure is one warning line. Any other failure is logged with its traceback.
    """
    templates = request.config_dict.get(TEMPLATES)
    hooks = request.config_dict.get(HOOKS)
    if templates is not None:
        for attempt in range(2):
            try:
                body = await templates.render_string(request, names, context)
            except Exception as failure:
                # A registry lookup, not the site's exception handlers: those report
                # (a catch-all's Sentry or email) and would pass a template bug off
                # as an outage.
                outage = hooks is not None and hooks.mark_outage(request, failure)
                if outage and attempt == 0:
                    continue
                if outage:
                    logger.warning(
                        "Rendering the error page %s failed again: %s; sent as plain text",
                        names[0],
                        one_line(failure),
                    )
                else:
                    # A broken error template must not hide the original error.
                    logger.exception("Rendering the error page %s failed", names[0])
                break
            return web.Response(
                text=body, status=status, headers=headers, content_type="text/html", charset="utf-8"
            )
    text = f"{status}: {HTTPStatus(status).phrase}"
    return web.Response(text=text, status=status, headers=headers)
