"""The request core: what aiosite does around every handler, and what hooks into it.

The ``Core`` does the per-request work aiosite always needs (a request id, the hooks,
ending what batteries opened for the request, turning exceptions into pages) around every
handler; when the handler succeeds and opened nothing it awaits nothing beyond the
handler. Batteries, apps and extensions hook in through ``aiosite.hooks`` (request and
response hooks ordered by name, handler wrappers, request finalizers, exception handlers
keyed by class), never through middlewares of their own.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any, cast

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler, Middleware
from yarl import URL

from aiosite.apps import AppRegistry
from aiosite.battery import Battery
from aiosite.exceptions import one_line
from aiosite.hooks import (
    HOOKS,
    REQUEST_FINALIZERS,
    HandlerWrapper,
    Hooks,
    RequestFinalizer,
    RequestHook,
    ResponseHook,
    run_request_finalizers,
)
from aiosite.keys import NO_ROUTE, REQUEST_ID, SETTINGS
from aiosite.settings import Settings
from aiosite.web.debug_page import debug_response
from aiosite.web.errors import error_response
from aiosite.web.logs import ThrottledLog
from aiosite.web.request_id import HEADER, RequestIdFactory, current_request_id, sane_id

logger = logging.getLogger("aiosite.request")

# In the core's middleware mode, the request the handler was given: a middleware between
# the core and the handler may pass on a clone (``request.clone(remote=...)``), whose
# state is a shallow copy, so what the handler stored on it (the browser session) is
# read from there. A one-item list, shared by the clones.
HANDLED_REQUEST: web.RequestKey[list[web.Request]] = web.RequestKey("aiosite.handled_request")


# What the core settles into each endpoint when the site starts: the handler wrappers, the
# request hooks and the response hooks that can matter for its routes.
Settle = Callable[
    [tuple[HandlerWrapper, ...], tuple[RequestHook, ...], tuple[ResponseHook, ...]], None
]


class Core:
    """The per-request work aiosite always does, run around every handler.

    Not an aiohttp middleware by default: as soon as an application has one middleware,
    aiohttp runs every request through its middleware chain (a wrapper of its own, a
    chain lookup, a partial per layer), which costs about a tenth of a hello-world
    request. Instead ``wrap`` makes each handler aiosite mounts (routes, static files)
    an endpoint that does the core's work itself, and a fallback resource answers what
    matches no route. Each endpoint runs only the hooks that can matter for its routes
    (``routes=`` of ``Hooks.add_request_hook``), settled when the site starts.

    Routes added to the router directly (``app.router.add_get`` in a setup hook) are
    wrapped when the site starts. When the site has middlewares (the project's, an
    extension's) or sub-applications, ``startup`` turns the core into the outermost
    middleware instead, running every hook, and the endpoints step aside: every request
    then passes through it exactly once. aiosite's own debug aids add no middleware
    (they are a request hook and a handler wrapper), so development runs the same path
    as production.
    """

    def __init__(self) -> None:
        # What batteries and apps register (hooks_of(app)); their order is checked when
        # the site is built, and they are settled into each endpoint when it starts.
        self.hooks = Hooks()
        self.new_id = RequestIdFactory()
        self.outer = False
        # Every endpoint the core made, with how to settle its hooks in it.
        self._wrapped: dict[Handler, Settle] = {}
        self._fallback = _Fallback(self, self.wrap(_no_route))
        # The core as a middleware: every request and response hook, around the handler
        # the middleware passes in (the handler given here is never called).
        self._everything, self._settle_everything = self._endpoint(_no_route)

    def wrap(self, handler: Handler | type[web.View]) -> Handler:
        """``handler`` with the core logic around it (for a route aiosite adds)."""
        endpoint, settle = self._endpoint(handler)
        # Code that looks at a route's handler (markers, names, docs) still finds them.
        functools.update_wrapper(
            endpoint, handler, updated=() if isinstance(handler, type) else ("__dict__",)
        )
        self._wrapped[endpoint] = settle
        return endpoint

    def _endpoint(
        self, handler: Handler | type[web.View]
    ) -> tuple[Callable[..., Awaitable[web.StreamResponse]], Settle]:
        """The core's work around ``handler`` as one coroutine function (no second
        coroutine per request), and how to settle its hooks."""
        # A class-based view is awaited like a handler's coroutine; typed as one here.
        inner = cast(Handler, handler)
        core = self
        new_id = self.new_id
        # Closure cells, settled when the site starts: nothing to look up per request.
        run = inner
        request_hooks: tuple[RequestHook, ...] = ()
        response_hooks: tuple[ResponseHook, ...] = ()

        async def endpoint(
            request: web.Request, outer_handler: Handler | None = None
        ) -> web.StreamResponse:
            # aiohttp calls endpoint(request); the core's middleware passes its handler.
            if outer_handler is None:
                if core.outer:
                    # The core's middleware ran the hooks: only the handler is left.
                    request[HANDLED_REQUEST][0] = request
                    return await run(request)
                handler = run
            else:
                handler = outer_handler
            incoming = request.headers.get(HEADER)
            request_id = incoming if incoming is not None and sane_id(incoming) else new_id()
            request[REQUEST_ID] = request_id
            current_request_id.set(request_id)
            # Set up front: a lookup of a key a request lacks raises and catches KeyError
            # inside aiohttp (about half a microsecond), and this one is read on every
            # request. Clones a middleware makes of the request share the list.
            finalizers: list[RequestFinalizer] = []
            request[REQUEST_FINALIZERS] = finalizers
            try:
                for check in request_hooks:
                    pending = check(request)
                    if pending is not None:
                        await pending
                response = await handler(request)
                if finalizers:
                    await run_request_finalizers(request, None)  # a failed commit lands below
            except web.HTTPException as exc:
                try:
                    await run_request_finalizers(request, exc)  # a redirect commits, an error not
                except Exception as failure:
                    response = await core.exception_response(request, failure)
                else:
                    if sent_as_raised(exc):
                        exc.headers[HEADER] = request_id
                        hooked = request if outer_handler is None else request[HANDLED_REQUEST][0]
                        finishing = core.finish_response(hooked, exc, response_hooks)
                        answer = exc if finishing is None else await finishing
                        if answer is exc:
                            raise
                        return answer
                    response = await core.exception_response(request, exc)
                # Whatever rendering the page opened (a context processor's query).
                await run_request_finalizers(request, exc)
            except Exception as exc:
                await run_request_finalizers(request, exc)
                response = await core.exception_response(request, exc)
                await run_request_finalizers(request, exc)
            except BaseException as exc:  # cancelled: give back what the handler held
                await run_request_finalizers(request, exc)
                raise
            # Set here rather than in on_response_prepare, whose receiver costs as much
            # per request as this whole function; a handler that prepares its own stream
            # sets it itself (docs/errors-and-logging.md).
            if not response.prepared:
                response.headers[HEADER] = request_id
                hooked = request if outer_handler is None else request[HANDLED_REQUEST][0]
                finishing = core.finish_response(hooked, response, response_hooks)
                if finishing is not None:
                    return await finishing
            return response

        def settle(
            wrappers: tuple[HandlerWrapper, ...],
            request_hooks_: tuple[RequestHook, ...],
            response_hooks_: tuple[ResponseHook, ...],
        ) -> None:
            nonlocal run, request_hooks, response_hooks
            request_hooks, response_hooks = request_hooks_, response_hooks_
            run = inner
            # First-ordered outermost, as aiohttp chains middlewares.
            for wrapper in reversed(wrappers):
                run = functools.update_wrapper(functools.partial(wrapper, handler=run), inner)

        return endpoint, settle

    async def exception_response(
        self, request: web.Request, exc: BaseException
    ) -> web.StreamResponse:
        """The answer to an exception the handler raised: what the exception handlers of
        its classes answer (503 for a database that is down), else the site's error page
        for an HTTP error, else a logged 500."""
        for handler in self.hooks.exception_handlers(type(exc)):
            try:
                answer = handler(request, exc)
                if inspect.isawaitable(answer):
                    answer = await answer
            except web.HTTPException as refusal:
                return await http_exception_response(request, refusal)
            except Exception as failure:
                logger.error(
                    "The exception handler %s failed on %s",
                    getattr(handler, "__qualname__", handler),
                    type(exc).__name__,
                    exc_info=failure,
                )
                break
            if isinstance(answer, web.HTTPException):
                return await http_exception_response(request, answer)
            if answer is not None:
                return answer
        if isinstance(exc, web.HTTPException):
            return await error_response(request, exc.status, exc)
        # What the exception usually means, when a battery registered a hint for it.
        hint = self.hooks.exception_hint(exc)
        logger.error(
            "Unhandled %s in %s %s%s",
            type(exc).__name__,
            request.method,
            request.path,
            f"\n{hint}" if hint else "",
            exc_info=exc,
        )
        return await server_error_response(request, exc)

    def finish_response(
        self,
        request: web.Request,
        response: web.StreamResponse,
        hooks: tuple[ResponseHook, ...],
    ) -> Awaitable[web.StreamResponse] | None:
        """Run the response ``hooks`` on the request the handler was given: None once they
        are done, which is the common case (every hook synchronous for this response, so
        nothing is awaited); otherwise an awaitable that finishes them and gives the
        answer, the error page of a hook that failed (a session store that is down)
        included."""
        for index, hook in enumerate(hooks):
            try:
                pending = hook(request, response)
            except Exception as exc:
                return self._hook_failed(request, response, exc)
            if pending is not None:
                return self._finish_hooks(request, response, pending, hooks[index + 1 :])
        return None

    async def _finish_hooks(
        self,
        request: web.Request,
        response: web.StreamResponse,
        pending: Awaitable[None],
        rest: tuple[ResponseHook, ...],
    ) -> web.StreamResponse:
        try:
            await pending
            for hook in rest:
                more = hook(request, response)
                if more is not None:
                    await more
        except Exception as exc:
            return await self._hook_failed(request, response, exc)
        return response

    async def _hook_failed(
        self, request: web.Request, response: web.StreamResponse, exc: Exception
    ) -> web.StreamResponse:
        answer = await self.exception_response(request, exc)
        answer.headers[HEADER] = response.headers.get(HEADER, "")
        return answer

    def middleware(self) -> Middleware:
        everything = self._everything

        @web.middleware
        async def aiosite_core(request: web.Request, handler: Handler) -> web.StreamResponse:
            # A container the clones a later middleware may make share with this request
            # (their state is a shallow copy), as they share the finalizers: the request
            # the handler was given, whose session the response hooks save.
            request[HANDLED_REQUEST] = [request]
            return await everything(request, handler)

        return aiosite_core

    def install(self, app: web.Application) -> None:
        """Choose the mode and settle the hooks' order when the application starts.

        Called once the site is assembled, so that the choice is made after the startup
        work of everything assembled before it (which may add routes). The order of the
        hooks registered so far is checked now: an impossible one stops the site from
        being built, before its startup opens anything.
        """
        self.plan(())
        app.on_startup.append(self.startup)

    def plan(
        self, routes: Collection[web.AbstractRoute]
    ) -> tuple[tuple[HandlerWrapper, ...], tuple[RequestHook, ...], tuple[ResponseHook, ...]]:
        """The handler wrappers, request hooks and response hooks that requests to
        ``routes`` run, in order (every one for no route)."""
        hooks = self.hooks
        return (
            tuple(hook for _, hook in hooks.handler_wrappers.for_routes(routes)),
            tuple(hook for _, hook in hooks.request_hooks.for_routes(routes)),
            tuple(hook for _, hook in hooks.response_hooks.for_routes(routes)),
        )

    def hook_names(self, app: web.Application, route: web.AbstractRoute) -> dict[str, list[str]]:
        """The names of the hooks a request to ``route`` of ``app`` runs, by kind (for
        ``aiosite routes --hooks``)."""
        router = app.router
        routes = self._routes_by_endpoint(router).get(route.handler, [])
        # A site that will run the core as a middleware runs every request and response
        # hook (decided at startup; asked here of a site that may not have started).
        every = self.outer or self._runs_as_middleware(router.resources(), app.middlewares)
        hooks = self.hooks
        return {
            "request": [
                name for name, _ in hooks.request_hooks.for_routes(() if every else routes)
            ],
            "wrapper": [name for name, _ in hooks.handler_wrappers.for_routes(routes)],
            "response": [
                name for name, _ in hooks.response_hooks.for_routes(() if every else routes)
            ],
        }

    @staticmethod
    def _runs_as_middleware(
        resources: Collection[web.AbstractResource], middlewares: Collection[object]
    ) -> bool:
        """Whether the core must be the outermost middleware: the site has middlewares of
        its own or sub-applications (the one rule startup and ``hook_names`` follow)."""
        return bool(middlewares) or any(
            isinstance(resource, web.PrefixedSubAppResource) for resource in resources
        )

    def _routes_by_endpoint(
        self, router: web.UrlDispatcher
    ) -> dict[Handler, list[web.AbstractRoute]]:
        routes: dict[Handler, list[web.AbstractRoute]] = {}
        for resource in router.resources():
            if not isinstance(resource, (web.PrefixedSubAppResource, _Fallback)):
                for route in resource:
                    routes.setdefault(route.handler, []).append(route)
        return routes

    async def startup(self, app: web.Application) -> None:
        """Settle the hooks and choose how the core runs, once every route and middleware
        is in place."""
        self.hooks.started = True
        router = app.router
        # Last in its index bucket again: behind "/" and "/{name}" routes added later.
        router.unindex_resource(self._fallback)
        router.index_resource(self._fallback)
        sub_apps = []
        for resource in router.resources():
            if isinstance(resource, web.PrefixedSubAppResource):
                sub_apps.append(resource)
                continue
            for route in resource:
                if route.handler not in self._wrapped:
                    # A route added to the router directly (a setup hook's, the debug
                    # toolbar's). aiohttp has no public way to replace a route's handler
                    # once it is added; the attribute has been the same throughout
                    # aiohttp 3, and a test serves such routes through the core.
                    route._handler = self.wrap(route.handler)  # type: ignore[assignment]
        routes_of = self._routes_by_endpoint(router)
        for endpoint, settle in self._wrapped.items():
            settle(*self.plan(routes_of.get(endpoint, ())))
        # As a middleware the core runs every request and response hook; the handler
        # wrappers stay in each route's endpoint, per route.
        _, request_hooks, response_hooks = self.plan(())
        self._settle_everything((), request_hooks, response_hooks)
        if self._runs_as_middleware(sub_apps, app.middlewares) and not app.middlewares.frozen:
            # The fallback steps aside too: unmatched requests get aiohttp's own 404/405
            # (which normalize_path_middleware and the like look for), and the core
            # turns them into error pages.
            self.outer = True
            app.middlewares.insert(0, self.middleware())
        elif sub_apps:
            logger.warning(
                "sub-applications (%s) run without aiosite's error pages and request "
                "finalizers: the site's middlewares were frozen before it started",
                ", ".join(resource.canonical for resource in sub_apps),
            )


CORE: web.AppKey[Core] = web.AppKey("aiosite.core", Core)


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


def sent_as_raised(exc: web.HTTPException) -> bool:
    """Whether an HTTP exception goes out as it was raised rather than as the site's
    error page: a redirect, or an error with a JSON body of its own."""
    return exc.status < 400 or exc.content_type == "application/json"


async def http_exception_response(
    request: web.Request, exc: web.HTTPException
) -> web.StreamResponse:
    """What an exception handler's HTTP exception means: a redirect, or an error with a
    JSON body of its own, as it is (as from a handler); any other error, the site's page."""
    if sent_as_raised(exc):
        return web.Response(
            body=exc.body, status=exc.status, reason=exc.reason, headers=exc.headers
        )
    return await error_response(request, exc.status, exc)


async def server_error_response(request: web.Request, exc: BaseException) -> web.Response:
    """A 500: the traceback page in debug mode, otherwise nothing of the exception."""
    settings: Settings = request.config_dict[SETTINGS]
    if settings.debug.enabled:
        return await debug_response(request, exc)
    return await error_response(request, 500)


class MalformedBody:
    """400 for a request body aiohttp cannot parse (broken chunked framing, a body
    shorter than its Content-Length): the client's doing, so one throttled line in the
    log and no traceback."""

    def __init__(self) -> None:
        self.log = ThrottledLog(logger)

    def __call__(self, request: web.Request, exc: HttpProcessingError) -> None:
        self.log.warning(
            "Malformed request body from %s (%s %s): %s",
            request.remote,
            request.method,
            request.path,
            one_line(exc),
        )
        raise web.HTTPBadRequest(text="The request body is malformed.")


def _attach(app: web.Application, settings: Settings, registry: AppRegistry) -> None:
    """The request core: made first, so that every later battery can hook into it.

    The fallback resource is registered now, since a site mounted as a sub-application
    is frozen as soon as it is added; startup moves it behind routes added since.
    """
    core = Core()
    app[CORE] = core
    app[HOOKS] = core.hooks
    core.hooks.add_exception_handler(HttpProcessingError, MalformedBody())
    app.router.register_resource(core._fallback)


battery = Battery("aiosite.core", _attach)
setup = battery.setup
