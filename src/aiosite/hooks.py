"""The one extension surface of a site's request core: hooks, finalizers, exception handlers.

Batteries, apps and third-party packages register here while the site is assembled (in
a battery's or an app's ``setup(app, settings, registry)``); the request core
(``aiosite.web.core``) runs what was registered around every handler::

    hooks = hooks_of(app)
    hooks.add_request_hook(check_api_key, name="myext.api_key", after=["aiosite.sessions"])
    hooks.add_response_hook(add_server_timing, name="myext.timing")
    hooks.add_exception_handler(PaymentDeclined, payment_declined_page)

Hooks are ordered by name, never by the order of the calls: ``before`` and ``after`` name
other hooks of the same kind (``"*"``: every other hook), and hooks that no constraint
orders keep the order in which they were added. The order is settled once, when the site
starts; a name that no hook has, or a circle of constraints, stops the start with one
line that says which. Nothing can be added once the site has started.

A request or response hook returns None, or an awaitable when it has async work to do for
this request: a hook with nothing to do costs a call, never an ``await``.

A hook that matters only for some routes says which with ``routes=``, a predicate on
aiohttp's route (its ``method``, its ``handler`` with the markers decorators put on it)::

    hooks.add_request_hook(check_token, name="myext.token",
                           routes=lambda route: route.method not in {"GET", "HEAD"})

It is asked once per route when the site starts; the requests of a route for which it
says False never call the hook. Requests that match no route call every hook; a site
whose core runs as a middleware calls every request and response hook on every
request, and handler wrappers per route.
"""

from __future__ import annotations

import heapq
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aiohttp import web
from aiohttp.typedefs import Middleware

from aiosite.exceptions import ImproperlyConfigured

# Run before the handler of every request (allowed hosts, CSRF): a hook refuses the
# request by raising an HTTPException.
RequestHook = Callable[[web.Request], Awaitable[None] | None]
# Run on every response the core returns, error pages and redirects included, unless the
# handler prepared (started sending) the response itself: security headers, saving the
# browser session.
ResponseHook = Callable[[web.Request, web.StreamResponse], Awaitable[None] | None]
# Ends what a battery opened for one request (the database session's transaction). The
# core calls it once the handler is done, with what the handler raised (None when it
# returned): committing work for a response, rolling back for an error.
RequestFinalizer = Callable[[BaseException | None], Awaitable[None]]
# The answer to an exception no handler caught: a response, or None to leave the
# exception to the handler of a more general class (in the end: the 500 page). Raising an
# HTTPException answers with the site's error page for it. May be async.
ExceptionHandler = Callable[
    [web.Request, Any],
    web.StreamResponse | Awaitable[web.StreamResponse | None] | None,
]
# Whether an exception that failed the rendering of an error page means a backing service
# is down (True) rather than a bug; when it does, it marks the request so that a second
# rendering leaves that service alone (docs/extending.md).
OutageMarker = Callable[[web.Request, Any], bool]
# An aiohttp-style middleware, ``async def wrapper(request, handler)``, that the core runs
# around the handler (inside the request hooks and the error pages). Unlike a middleware
# of the application's, it leaves the core in its fast mode (docs/extending.md).
HandlerWrapper = Middleware
# Whether a hook can matter for the requests of a route (asked once per route at startup).
RouteFilter = Callable[[web.AbstractRoute], bool]

EVERY = "*"
E = TypeVar("E", bound=BaseException)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Entry(Generic[T]):
    name: str
    hook: T
    before: frozenset[str]
    after: frozenset[str]
    routes: RouteFilter | None


class OrderedHooks(Generic[T]):
    """One kind of hook (request, response, handler wrapper), with its order by name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: list[_Entry[T]] = []
        self._order: list[_Entry[T]] | None = None  # settled once per batch of additions

    @property
    def names(self) -> list[str]:
        """The names in the order the hooks were added."""
        return [entry.name for entry in self._entries]

    def add(
        self,
        hook: T,
        name: str,
        before: Iterable[str],
        after: Iterable[str],
        routes: RouteFilter | None = None,
    ) -> None:
        if not name or name == EVERY:
            raise ImproperlyConfigured(f"a {self.kind} needs a name of its own, e.g. 'myapp.check'")
        if name in self.names:
            raise ImproperlyConfigured(
                f"two {self.kind}s are named {name!r}; give one another name"
            )
        before_set, after_set = _names(before), _names(after)
        if name in before_set | after_set:
            raise ImproperlyConfigured(f"{self.kind} {name!r} cannot run before or after itself")
        self._entries.append(_Entry(name, hook, before_set, after_set, routes))
        self._order = None

    def for_routes(self, routes: Collection[web.AbstractRoute]) -> list[tuple[str, T]]:
        """The names and hooks, in running order, that can matter for requests to any of
        ``routes`` (every hook when ``routes`` is empty: a request no route matched)."""
        return [
            (entry.name, entry.hook)
            for entry in self._ordered_entries()
            if entry.routes is None or not routes or any(map(entry.routes, routes))
        ]

    def _ordered_entries(self) -> list[_Entry[T]]:
        """The entries in running order: every constraint met, else the order of adding."""
        if self._order is None:
            self._order = self._settle()
        return self._order

    def _settle(self) -> list[_Entry[T]]:
        entries = self._entries
        index = {entry.name: position for position, entry in enumerate(entries)}
        edges: list[set[int]] = [set() for _ in entries]  # position -> positions after it
        for position, entry in enumerate(entries):
            for other in self._resolve(entry, entry.before, index, "before"):
                edges[position].add(other)
            for other in self._resolve(entry, entry.after, index, "after"):
                edges[other].add(position)
        waiting = [0] * len(entries)
        for targets in edges:
            for target in targets:
                waiting[target] += 1
        ready = [position for position, count in enumerate(waiting) if count == 0]
        heapq.heapify(ready)
        order: list[int] = []
        while ready:
            position = heapq.heappop(ready)
            order.append(position)
            for target in edges[position]:
                waiting[target] -= 1
                if waiting[target] == 0:
                    heapq.heappush(ready, target)
        if len(order) < len(entries):
            stuck = ", ".join(repr(entries[p].name) for p in _in_circles(edges, set(order)))
            raise ImproperlyConfigured(
                f"the {self.kind}s {stuck} are ordered in a circle by their before/after; "
                "drop one of those constraints"
            )
        return [entries[position] for position in order]

    def _resolve(
        self, entry: _Entry[T], names: frozenset[str], index: dict[str, int], side: str
    ) -> list[int]:
        if EVERY in names:
            # Every hook that does not itself ask for the same place.
            return [
                position
                for position, other in enumerate(self._entries)
                if other is not entry and EVERY not in getattr(other, side)
            ]
        positions = []
        for name in sorted(names):
            if name not in index:
                known = ", ".join(repr(n) for n in self.names) or "none"
                raise ImproperlyConfigured(
                    f"{self.kind} {entry.name!r} is to run {side} {name!r}, but no {self.kind} "
                    f"has that name (the site has: {known})"
                )
            positions.append(index[name])
        return positions


def _in_circles(edges: list[set[int]], placed: set[int]) -> list[int]:
    """The positions on a circle of ``edges``: what is left unplaced once the hooks that
    merely wait behind a circle (nothing left runs after them) are taken away too."""
    left = set(range(len(edges))) - placed
    while True:
        behind = {p for p in left if not edges[p] & left}
        if not behind:
            return sorted(left)
        left -= behind


def _most_specific(table: dict[type[BaseException], T], exc_type: type[BaseException]) -> T | None:
    """What ``table`` holds for the most specific of ``exc_type``'s classes, if any."""
    for cls in exc_type.__mro__:
        found = table.get(cls)
        if found is not None:
            return found
    return None


def _names(value: Iterable[str]) -> frozenset[str]:
    # A lone string is one name, not its letters.
    return frozenset([value] if isinstance(value, str) else value)


class Hooks:
    """What a site's request core runs around every handler; ``hooks_of(app)``."""

    def __init__(self) -> None:
        self.request_hooks: OrderedHooks[RequestHook] = OrderedHooks("request hook")
        self.response_hooks: OrderedHooks[ResponseHook] = OrderedHooks("response hook")
        self.handler_wrappers: OrderedHooks[HandlerWrapper] = OrderedHooks("handler wrapper")
        self._exception_handlers: dict[type[BaseException], ExceptionHandler] = {}
        self._for_type: dict[type[BaseException], tuple[ExceptionHandler, ...]] = {}
        self._hints: dict[type[BaseException], str] = {}
        self._outages: dict[type[BaseException], OutageMarker] = {}
        self.started = False

    def add_request_hook(
        self,
        hook: RequestHook,
        *,
        name: str,
        before: Collection[str] = (),
        after: Collection[str] = (),
        routes: RouteFilter | None = None,
    ) -> None:
        """Run ``hook(request)`` before the handler of every request (of the routes for
        which ``routes(route)`` is true, when given)."""
        self._refuse_started(name)
        self.request_hooks.add(hook, name, before, after, routes)

    def add_response_hook(
        self,
        hook: ResponseHook,
        *,
        name: str,
        before: Collection[str] = (),
        after: Collection[str] = (),
        routes: RouteFilter | None = None,
    ) -> None:
        """Run ``hook(request, response)`` on every response the core returns (of the
        routes for which ``routes(route)`` is true, when given)."""
        self._refuse_started(name)
        self.response_hooks.add(hook, name, before, after, routes)

    def add_handler_wrapper(
        self,
        wrapper: HandlerWrapper,
        *,
        name: str,
        before: Collection[str] = (),
        after: Collection[str] = (),
        routes: RouteFilter | None = None,
    ) -> None:
        """Run ``wrapper(request, handler)`` around every handler (of the routes for which
        ``routes(route)`` is true, when given); ``before`` means outside."""
        self._refuse_started(name)
        self.handler_wrappers.add(wrapper, name, before, after, routes)

    def add_exception_handler(
        self, exc_type: type[E], handler: Callable[[web.Request, E], Any]
    ) -> None:
        """Answer exceptions of ``exc_type`` (and its subclasses) with ``handler``.

        For one exception the handler of its most specific registered class runs first;
        when it returns None the next more general one does. A later registration for
        the same class replaces the earlier one (an app overrides a battery).
        """
        self._check_exception_class(exc_type, "add_exception_handler")
        self._exception_handlers[exc_type] = handler
        self._for_type.clear()

    def exception_handlers(self, exc_type: type[BaseException]) -> tuple[ExceptionHandler, ...]:
        """The handlers for ``exc_type``, most specific first. For an HTTPException only
        handlers of HTTP exception classes count: a handler for ``Exception`` is no 404 page."""
        found = self._for_type.get(exc_type)
        if found is None:
            mro = exc_type.__mro__
            if issubclass(exc_type, web.HTTPException):
                mro = mro[: mro.index(web.HTTPException) + 1]
            found = tuple(
                self._exception_handlers[cls] for cls in mro if cls in self._exception_handlers
            )
            self._for_type[exc_type] = found
        return found

    def add_exception_hint(self, exc_type: type[BaseException], hint: str) -> None:
        """Add ``hint`` to the log line and the debug page of an unhandled ``exc_type`` (and
        its subclasses, and an exception raised from one): what that exception usually
        means in a site, and the fix.

        The hint of the exception's most specific registered class is shown; a later
        registration for the same class replaces the earlier one.
        """
        self._check_exception_class(exc_type, "add_exception_hint")
        self._hints[exc_type] = hint

    def exception_hint(self, exc: BaseException) -> str | None:
        """The hint registered for the class of ``exc`` (or a base class), else for its
        direct cause, and so on (a library that wraps an error, ``raise X from error``,
        still gets the hint of the error); None when there is none."""
        if not self._hints:
            return None
        current: BaseException | None = exc
        for _ in range(5):  # a cause chain is short; a loop in one must not hang here
            if current is None:
                break
            hint = _most_specific(self._hints, type(current))
            if hint is not None:
                return hint
            current = current.__cause__
        return None

    def add_outage_type(self, exc_type: type[E], mark: Callable[[web.Request, E], bool]) -> None:
        """Declare that ``exc_type`` (and its subclasses) may mean a backing service is
        down: an error page whose rendering fails with it is no template bug.

        ``mark(request, exc)`` is then called, and nothing else (exception handlers are
        not run for such a failure): it returns False when ``exc`` is no outage after
        all, and the failure is logged with its traceback; otherwise it marks the
        request, so that the page's context processors leave that service alone, and
        returns True, and the page is rendered once more. It may log the outage once per
        request; it runs on every error page that fails on that service, so it must
        report nothing else. A later registration for the same class replaces the
        earlier one; the marker of the exception's most specific registered class runs.
        """
        self._check_exception_class(exc_type, "add_outage_type")
        self._outages[exc_type] = mark

    def mark_outage(self, request: web.Request, exc: BaseException) -> bool:
        """Whether ``exc`` means a backing service is down, by the marker registered for
        its class (which marks the request); False for an exception of no outage type."""
        mark = _most_specific(self._outages, type(exc))
        return mark is not None and mark(request, exc)

    def _check_exception_class(self, exc_type: object, method: str) -> None:
        if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
            raise ImproperlyConfigured(f"{method} takes an exception class, not {exc_type!r}")
        self._refuse_started(exc_type.__qualname__)

    def _refuse_started(self, what: str) -> None:
        if self.started:
            raise RuntimeError(
                f"cannot register {what!r}: the site has started; register hooks in a "
                "setup(app, settings, registry) function, while the site is assembled"
            )


HOOKS: web.AppKey[Hooks] = web.AppKey("aiosite.hooks", Hooks)
REQUEST_FINALIZERS: web.RequestKey[list[RequestFinalizer]] = web.RequestKey(
    "aiosite.request_finalizers", list
)


def hooks_of(app: web.Application) -> Hooks:
    """The site's hooks, to register on while the site is assembled."""
    try:
        return app[HOOKS]
    except KeyError:
        raise RuntimeError(
            "this application has no aiosite request core; build it with aiosite's "
            "create_site (or load_site)"
        ) from None


def add_request_finalizer(request: web.Request, finalizer: RequestFinalizer) -> None:
    """Have the core await ``finalizer(exc)`` when the request's handler is done."""
    finalizers = request.get(REQUEST_FINALIZERS)
    if finalizers is None:
        request[REQUEST_FINALIZERS] = [finalizer]
    else:
        finalizers.append(finalizer)


async def run_request_finalizers(request: web.Request, exc: BaseException | None = None) -> None:
    """Run the finalizers registered for ``request`` so far (each once), with what the
    handler raised (None: it returned). The core calls this when the handler is done; a
    websocket or event stream calls it once open, so that what the request opened (its
    database session) is not held for the socket's life.

    Every finalizer runs, even after one fails; the first failure is raised after. The
    list is emptied in place: the core holds the same list, and a finalizer registered
    later lands in it and runs at the next call.
    """
    finalizers = request.get(REQUEST_FINALIZERS)
    if not finalizers:
        return
    pending = tuple(finalizers)
    finalizers.clear()
    failure: Exception | None = None
    for finalizer in pending:
        try:
            await finalizer(exc)
        except Exception as error:
            failure = failure or error
    if failure is not None:
        raise failure


__all__ = [
    "EVERY",
    "HOOKS",
    "ExceptionHandler",
    "HandlerWrapper",
    "Hooks",
    "OutageMarker",
    "RequestFinalizer",
    "RequestHook",
    "ResponseHook",
    "RouteFilter",
    "add_request_finalizer",
    "hooks_of",
    "run_request_finalizers",
]
