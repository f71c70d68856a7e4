"""Error pages: 4xx/5xx rendered from overridable templates, or JSON for API clients.

The ``Core`` does the per-request work aiosite always needs (a request id, ending what
batteries opened for the request, turning exceptions into pages) around every handler;
when the handler succeeds and opened nothing it awaits nothing beyond the handler.
Batteries hook in through keys, not middlewares of their own: request and response hooks
(``core.request_hooks``, ``core.response_hooks``), which return an awaitable only when
they have async work for this request, a request finalizer
(``keys.add_request_finalizer``) and an error translator (``keys.ERROR_TRANSLATORS``).
"""

from __future__ import annotations

import linecache
import logging
import re
import sys
import traceback
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import aiohttp_session
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware
from yarl import URL

from aiosite.keys import (
    ERROR_TRANSLATORS,
    HANDLED_REQUEST,
    NO_ROUTE,
    REQUEST_FINALIZERS,
    ROUTES,
    SETTINGS,
    TEMPLATES,
    RequestFinalizer,
    RequestHook,
    ResponseHook,
)
from aiosite.web.request_id import HEADER, RequestIdFactory, request_id_for
from aiosite.web.responses import json_response

logger = logging.getLogger("aiosite.request")

_SECRET_NAME = re.compile(r"pass|secret|token|key|auth|cookie|session|csrf|signature", re.I)
_DROPPED_HEADERS = frozenset({hdrs.CONTENT_TYPE, hdrs.CONTENT_LENGTH, hdrs.CONTENT_ENCODING})


class Core:
    """The per-request work aiosite always does, run around every handler.

    Not an aiohttp middleware by default: as soon as an application has one middleware,
    aiohttp runs every request through its middleware chain (a wrapper of its own, a
    chain lookup, a partial per layer), which costs about a tenth of a hello-world
    request. Instead ``wrap`` puts the core logic around each handler aiosite mounts
    (routes, static files) and a fallback resource answers what matches no route.

    When the site has middlewares (the project's, an extension's) or routes that
    aiosite did not mount (``app.router.add_get`` in a setup hook, a sub-application),
    ``startup`` turns the core into the outermost middleware instead, and the wrapped
    handlers step aside: every request then passes through it exactly once.
    """

    def __init__(self) -> None:
        self.new_id = RequestIdFactory()
        self.outer = False
        # Filled by batteries' setup (allowed hosts, CSRF, sessions, security headers).
        self.request_hooks: list[RequestHook] = []
        self.response_hooks: list[ResponseHook] = []
        self._wrapped: set[Handler] = set()
        self._fallback = _Fallback(self, self.wrap(_no_route))

    def wrap(self, handler: Handler | type[web.View]) -> Handler:
        """``handler`` with the core logic around it (for a route aiosite adds)."""
        # A class-based view is awaited like a handler's coroutine; typed as one here.
        inner = cast(Handler, handler)

        async def endpoint(request: web.Request) -> web.StreamResponse:
            if self.outer:
                # The core's middleware set it: every request passes through it first.
                request[HANDLED_REQUEST][0] = request
                return await inner(request)
            return await self.serve(request, inner)

        endpoint.__wrapped__ = handler  # type: ignore[attr-defined]
        self._wrapped.add(endpoint)
        return endpoint

    async def serve(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = request_id_for(request, self.new_id)
        # Set up front: a lookup of a key a request lacks raises and catches KeyError
        # inside aiohttp (about half a microsecond), and this one is read on every request.
        # Clones a middleware makes of the request share the list.
        finalizers: list[RequestFinalizer] = []
        request[REQUEST_FINALIZERS] = finalizers
        try:
            for check in self.request_hooks:
                pending = check(request)
                if pending is not None:
                    await pending
            response = await handler(request)
            if finalizers:
                await finish_request(request, None)  # a failed commit lands below
        except web.HTTPException as exc:
            try:
                await finish_request(request, exc)  # a redirect commits, an error does not
            except Exception as failure:
                response = await exception_response(request, failure)
            else:
                if exc.status < 400 or exc.content_type == "application/json":
                    exc.headers[HEADER] = request_id
                    finishing = self.finish_response(request, exc)
                    answer = exc if finishing is None else await finishing
                    if answer is exc:
                        raise
                    return answer
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
        # request as this whole method; a handler that prepares its own stream sets it
        # itself (docs/errors-and-logging.md).
        if not response.prepared:
            response.headers[HEADER] = request_id
            finishing = self.finish_response(request, response)
            if finishing is not None:
                return await finishing
        return response

    def finish_response(
        self, request: web.Request, response: web.StreamResponse
    ) -> Awaitable[web.StreamResponse] | None:
        """Run the response hooks: None once they are done, which is the common case (every
        hook synchronous for this response, so nothing is awaited); otherwise an awaitable
        that finishes them and gives the answer, the error page of a hook that failed (a
        session store that is down) included."""
        if self.outer:
            request = request[HANDLED_REQUEST][0]
        for index, hook in enumerate(self.response_hooks):
            try:
                pending = hook(request, response)
            except Exception as exc:
                return self._hook_failed(request, response, exc)
            if pending is not None:
                return self._finish_hooks(request, response, pending, index + 1)
        return None

    async def _finish_hooks(
        self,
        request: web.Request,
        response: web.StreamResponse,
        pending: Awaitable[None],
        start: int,
    ) -> web.StreamResponse:
        try:
            await pending
            for hook in self.response_hooks[start:]:
                more = hook(request, response)
                if more is not None:
                    await more
        except Exception as exc:
            return await self._hook_failed(request, response, exc)
        return response

    async def _hook_failed(
        self, request: web.Request, response: web.StreamResponse, exc: Exception
    ) -> web.StreamResponse:
        answer = await exception_response(request, exc)
        answer.headers[HEADER] = response.headers.get(HEADER, "")
        return answer

    def middleware(self) -> Middleware:
        @web.middleware
        async def aiosite_core(request: web.Request, handler: Handler) -> web.StreamResponse:
            # A container the clones a later middleware may make share with this request
            # (their state is a shallow copy), as they share the finalizers: the request
            # the handler was given, whose session the response hooks save.
            request[HANDLED_REQUEST] = [request]
            return await self.serve(request, handler)

        return aiosite_core

    def install(self, app: web.Application) -> None:
        """Add the fallback resource and choose the mode when the application starts.

        The fallback is registered now, since a site mounted as a sub-application is
        frozen as soon as it is added; startup moves it behind routes added since.
        """
        app.router.register_resource(self._fallback)
        app.on_startup.append(self.startup)

    async def startup(self, app: web.Application) -> None:
        """Choose how the core runs, once every route and middleware is in place."""
        router = app.router
        # Last in its index bucket again: behind "/" and "/{name}" routes added later.
        router.unindex_resource(self._fallback)
        router.index_resource(self._fallback)
        foreign = [
            resource
            for resource in router.resources()
            if isinstance(resource, web.PrefixedSubAppResource)
            or any(route.handler not in self._wrapped for route in resource)
        ]
        if (app.middlewares or foreign) and not app.middlewares.frozen:
            # The fallback steps aside too: unmatched requests get aiohttp's own 404/405
            # (which normalize_path_middleware and the like look for), and the core
            # turns them into error pages.
            self.outer = True
            app.middlewares.insert(0, self.middleware())
        elif foreign:
            logger.warning(
                "routes not mounted by aiosite (%s) run without its error pages and request "
                "finalizers: the site's middlewares were frozen before it started",
                ", ".join(resource.canonical for resource in foreign),
            )


class _Fallback(web.Resource):
    """Matches every path, after every other resource: requests that match no route
    reach the core (and its error pages) through it, without a middleware."""

    def __init__(self, core: Core, handler: Handler) -> None:
        super().__init__(name=None)
        self._core = core
        self._prefix = ""  # set when the site is mounted as a sub-application
        self.add_route(hdrs.METH_ANY, handler)

    @property
    def canonical(self) -> str:
        return self._prefix or "/"

    def _match(self, path: str) -> dict[str, str] | None:
        return None if self._core.outer else {}

    def raw_match(self, path: str) -> bool:
        return False

    def get_info(self) -> Any:  # aiohttp's return type is private
        return {"prefix": self.canonical}

    def url_for(self, **kwargs: str) -> URL:
        raise RuntimeError("the fallback resource has no URL")

    def add_prefix(self, prefix: str) -> None:
        self._prefix = prefix + self._prefix

    def __repr__(self) -> str:
        return "<aiosite fallback resource>"


async def _no_route(request: web.Request) -> web.StreamResponse:
    """404, or 405 when some route has the path but not the method (what aiohttp's
    router answers by itself when no resource matches everything)."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if isinstance(resource, _Fallback):
            continue
        match, methods = await resource.resolve(request)
        if match is None:
            allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


setattr(_no_route, NO_ROUTE, True)


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
        # The parsed form, if the handler (or the CSRF check) read one: never read an
        # unread body here. aiohttp keeps it on the request without a public accessor.
        form = getattr(request, "_post", None)
        if form is not None:
            values += [v for k, v in form.items() if isinstance(v, str) and _SECRET_NAME.search(k)]
        session = request.get(aiohttp_session.SESSION_KEY)
        if session is not None:
            values += [
                v for k, v in session.items() if isinstance(v, str) and _SECRET_NAME.search(k)
            ]
        values += request.config_dict[SETTINGS].security.secret_values()
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
