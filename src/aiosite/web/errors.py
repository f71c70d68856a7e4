"""Error pages: 4xx/5xx rendered from overridable templates, or JSON for API clients.

One middleware does the per-request work aiosite always needs (a request id, ending
what batteries opened for the request, turning exceptions into pages); when the handler
succeeds and opened nothing it allocates nothing and awaits nothing beyond the handler.
Batteries hook in through keys, not middlewares of their own: a request finalizer
(``keys.add_request_finalizer``) and an error translator (``keys.ERROR_TRANSLATORS``).
"""

from __future__ import annotations

import linecache
import logging
import re
import sys
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from aiosite.keys import ERROR_TRANSLATORS, REQUEST_FINALIZERS, ROUTES, SETTINGS, TEMPLATES
from aiosite.web.request_id import HEADER, RequestIdFactory, request_id_for
from aiosite.web.responses import json_response

logger = logging.getLogger("aiosite.request")

_SECRET_NAME = re.compile(r"pass|secret|token|key|auth|cookie|session|csrf|signature", re.I)
_DROPPED_HEADERS = frozenset({hdrs.CONTENT_TYPE, hdrs.CONTENT_LENGTH, hdrs.CONTENT_ENCODING})


def core_middleware() -> Middleware:
    new_id = RequestIdFactory()

    @web.middleware
    async def aiosite_core(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = request_id_for(request, new_id)
        try:
            response = await handler(request)
            if REQUEST_FINALIZERS in request:
                await finish_request(request, None)  # a failed commit lands below
        except web.HTTPException as exc:
            try:
                await finish_request(request, exc)  # a redirect commits, an error does not
            except Exception as failure:
                response = await exception_response(request, failure)
            else:
                if exc.status < 400 or exc.content_type == "application/json":
                    exc.headers[HEADER] = request_id
                    raise
                response = await error_response(request, exc.status, exc)
            # Whatever rendering the page opened (a context processor's query).
            await finish_request(request, exc)
        except Exception as exc:
            await finish_request(request, exc)
            response = await exception_response(request, exc)
            await finish_request(request, exc)
        except BaseException as exc:  # cancelled: give back what the handler held
            await finish_request(request, exc)
            raise
        # Set here rather than in on_response_prepare, whose receiver costs as much per
        # request as this whole middleware; a handler that prepares its own stream sets
        # it itself (docs/errors-and-logging.md).
        if not response.prepared:
            response.headers[HEADER] = request_id
        return response

    return aiosite_core


async def finish_request(request: web.Request, exc: BaseException | None) -> None:
    """Run (once) the finalizers batteries registered for the request.

    Every finalizer runs, even after one fails; the first failure is raised after.
    """
    finalizers = request.get(REQUEST_FINALIZERS)
    if not finalizers:
        return
    del request[REQUEST_FINALIZERS]
    failure: Exception | None = None
    for finalizer in finalizers:
        try:
            await finalizer(exc)
        except Exception as error:
            failure = failure or error
    if failure is not None:
        raise failure


async def exception_response(request: web.Request, exc: BaseException) -> web.Response:
    """The answer to an exception no handler caught: the HTTP error a battery translates
    it to (503 for a database that is down), else a logged 500."""
    for translate in request.config_dict.get(ERROR_TRANSLATORS, ()):
        translated = translate(exc)
        if translated is not None:
            return await error_response(request, translated.status, translated)
    logger.error(
        "Unhandled %s in %s %s", type(exc).__name__, request.method, request.path, exc_info=exc
    )
    return await server_error_response(request, exc)


def wants_json(request: web.Request) -> bool:
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
    """The page (or JSON body) for an HTTP error ``status``."""
    reason = exc.reason if exc is not None else HTTPStatus(status).phrase
    message = _custom_message(exc) if exc is not None else None
    headers: dict[str, str] = {}
    if exc is not None:
        headers = {k: v for k, v in exc.headers.items() if k not in _DROPPED_HEADERS}
    if wants_json(request):
        body = {"error": {"status": status, "reason": reason, "message": message}}
        return json_response(body, status=status, headers=headers)
    context = {"status": status, "reason": reason, "message": message}
    return await _page(request, [f"{status}.html", "error.html"], context, status, headers)


async def server_error_response(request: web.Request, exc: BaseException) -> web.Response:
    """A 500: the traceback page in debug mode, otherwise nothing of the exception."""
    debug = request.config_dict[SETTINGS].debug.enabled
    if not debug:
        return await error_response(request, 500)
    scrub = _Scrubber(request)
    context = {
        "exc_type": type(exc).__name__,
        "exc_message": scrub(str(exc)),
        "frames": _frames(exc.__traceback__, scrub),
        "traceback": scrub("".join(traceback.format_exception(exc))),
        "headers": [
            (k, "********" if _SECRET_NAME.search(k) else v) for k, v in request.headers.items()
        ],
        "request": request,
    }
    if wants_json(request):
        body = {
            "error": {
                "status": 500,
                "reason": "Internal Server Error",
                "message": f"{type(exc).__name__}: {context['exc_message']}",
                "traceback": context["traceback"],
            }
        }
        return json_response(body, status=500)
    return await _page(request, ["aiosite/debug_500.html"], context, 500, {})


class _Scrubber:
    """Blanks out the secrets a request carries (secret-looking query values, headers and
    cookies) wherever they would show on the debug page, e.g. inside a local's repr."""

    def __init__(self, request: web.Request) -> None:
        values = [v for k, v in request.query.items() if _SECRET_NAME.search(k)]
        values += [v for k, v in request.headers.items() if _SECRET_NAME.search(k)]
        values += list(request.cookies.values())
        # Longest first, so a secret that contains another is blanked whole.
        self._secrets = sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "********")
        return text


async def _page(
    request: web.Request,
    names: Sequence[str],
    context: Mapping[str, Any],
    status: int,
    headers: Mapping[str, str],
) -> web.Response:
    templates = request.config_dict.get(TEMPLATES)
    if templates is not None:
        try:
            body = await templates.render_string(request, names, context)
        except Exception:
            # A broken error template must not hide the original error.
            logger.exception("Rendering the error page %s failed", names[0])
        else:
            return web.Response(
                text=body, status=status, headers=headers, content_type="text/html", charset="utf-8"
            )
    text = f"{status}: {HTTPStatus(status).phrase}"
    return web.Response(text=text, status=status, headers=headers)


@dataclass(frozen=True, slots=True)
class Frame:
    filename: str
    lineno: int
    function: str
    lines: tuple[tuple[int, str], ...]
    locals: tuple[tuple[str, str], ...]
    library: bool


def _frames(tb: TracebackType | None, scrub: _Scrubber) -> list[Frame]:
    frames = []
    # Library frames fold on the page: installed packages, the stdlib and aiosite itself.
    library_roots = (
        *(p for p in sys.path if "site-packages" in p or "lib/python" in p),
        str(Path(__file__).resolve().parents[1]),
    )
    while tb is not None:
        code = tb.tb_frame.f_code
        lineno = tb.tb_lineno
        around = range(max(lineno - 3, 1), lineno + 3)
        lines = tuple((n, linecache.getline(code.co_filename, n).rstrip()) for n in around)
        local_vars = tuple(
            (name, "********" if _SECRET_NAME.search(name) else scrub(_short_repr(value)))
            for name, value in tb.tb_frame.f_locals.items()
        )
        frames.append(
            Frame(
                code.co_filename,
                lineno,
                code.co_name,
                lines,
                local_vars,
                code.co_filename.startswith(library_roots),
            )
        )
        tb = tb.tb_next
    return frames


def _short_repr(value: object) -> str:
    try:
        text = repr(value)
    except Exception as exc:
        text = f"<repr failed: {type(exc).__name__}>"
    return text if len(text) <= 300 else text[:300] + "…"
