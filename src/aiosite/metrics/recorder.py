"""The request metrics, counted around every handler at the cost of two clock reads and
a few dictionary updates; folded into the process's ``Series`` about once a second.

Nothing on the request path touches prometheus_client: its multiprocess mode writes each
change to a memory-mapped file (a lock, a JSON key, a struct pack), which would cost a
hello-world request a good part of its time. Requests are tallied here per route object
(the label is worked out when folding), and ``fold`` moves the tallies into the
``Series`` that the scrape, or the writer of the multiprocess files, reads.

A handler that raised is not counted by the wrapper: the status the client gets is the
core's answer (an exception handler's 503 for a database that is down, a redirect whose
commit failed...), so the measurement is parked until the response hook
``aiosite.metrics`` sees that answer. A response the core never hooks (one an exception
handler prepared itself, a request whose ending failed) leaves its measurement parked:
the second fold after it counts it as 500 (an ``HTTPException``'s own status, 499 for a
cancelled handler: a client that went away gets no answer).
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from collections.abc import Callable
from time import perf_counter

from aiohttp import web
from aiohttp.typedefs import Handler

from aiosite.handlers import route_label
from aiosite.hooks import HandlerWrapper, ResponseHook
from aiosite.metrics.series import Series

REQUESTS = "aiosite_requests"
DURATION = "aiosite_request_duration_seconds"
IN_FLIGHT = "aiosite_requests_in_flight"
# A client may send any token as its method; others are counted as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# nginx's status for a request the client gave up on (its handler was cancelled).
CLIENT_CLOSED = 499
# A websocket's answer, and an event stream's content type: counted, but not timed.
SWITCHING_PROTOCOLS = 101
EVENT_STREAM = "text/event-stream"
# Seconds past which a response is checked for an event stream (a shorter-lived one is
# timed: it does not distort the histogram).
LONG_LIVED = 1.0


class RouteTally:
    """The requests of one route since the last fold."""

    __slots__ = ("buckets", "statuses", "total")

    def __init__(self, size: int) -> None:
        self.statuses: dict[tuple[str, int], int] = {}
        self.buckets = [0] * size
        self.total = 0.0


class Parked:
    """A request whose handler raised, measured, waiting for the status of the answer."""

    __slots__ = ("elapsed", "fallback", "fold", "request")

    def __init__(self, request: web.Request, fallback: int, elapsed: float, fold: int) -> None:
        # Held so that its id, the key it is parked under, is not reused meanwhile.
        self.request = request
        self.fallback = fallback  # counted when no response hook sees the answer
        self.elapsed = elapsed
        self.fold = fold  # the number of folds before it was parked


class RequestRecorder:
    """The tallies of one site in one process, the handler wrapper that counts, and the
    response hook that counts the requests whose handler raised."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        # By route object (None: a request no route matched, in middleware mode). Emptied
        # in place by ``fold``: the wrapper holds this very dictionary.
        self.pending: dict[web.AbstractRoute | None, RouteTally] = {}
        # By id(request): web.Request is unhashable, and nothing is stored on the request
        # (the response hook looks here only when something is parked). Emptied in place.
        self.parked: dict[int, Parked] = {}
        self.folds = 0
        self._labels: dict[web.AbstractRoute | None, str] = {}
        # Requests whose handler runs now: read from the wrapper's closure.
        self.in_flight: Callable[[], int] = lambda: 0

    def wrapper(self) -> HandlerWrapper:
        """The handler wrapper; its common path is inlined (a helper call costs about as
        much as the counting), and the in-flight count is a closure cell (cheaper to
        update than an attribute)."""
        in_flight = 0
        tally = self.tally
        parked = self.parked
        recorder = self
        pending = self.pending
        bounds = self.bounds
        size = len(bounds) + 1
        clock = perf_counter

        def park(request: web.Request, fallback: int, elapsed: float) -> None:
            parked[id(request)] = Parked(request, fallback, elapsed, recorder.folds)

        def count_in_flight() -> int:
            return in_flight

        self.in_flight = count_in_flight

        async def measure_request(request: web.Request, handler: Handler) -> web.StreamResponse:
            nonlocal in_flight
            in_flight += 1
            start = clock()
            try:
                response = await handler(request)
            # The core answers an exception as its exception handlers say (an HTTP
            # exception's handlers too), and a failed commit or response hook may replace
            # even an HTTP exception's answer: the response hook counts what was sent.
            except web.HTTPException as exc:
                in_flight -= 1
                park(request, exc.status, clock() - start)
                raise
            except Exception:
                in_flight -= 1
                park(request, 500, clock() - start)
                raise
            except asyncio.CancelledError:
                # The client went away (499: no answer, no response hook). A budget's
                # timeout, inside this wrapper, raises its 504 instead.
                in_flight -= 1
                park(request, CLIENT_CLOSED, clock() - start)
                raise
            except BaseException:  # the core lets it through: no response hook either
                in_flight -= 1
                tally(request, 500, clock() - start)
                raise
            elapsed = clock() - start
            in_flight -= 1
            # Subscripts rather than .get(): a method call costs more than the lookup,
            # and after the first request of a route the keys are there.
            route = request.match_info.route
            try:
                counts = pending[route]
            except KeyError:
                counts = pending[route] = RouteTally(size)
            status = response.status
            key = (request.method, status)
            statuses = counts.statuses
            try:
                statuses[key] += 1
            except KeyError:
                statuses[key] = 1
            # A websocket's or an event stream's handler returns when it closes: its
            # life is no request's duration. Two comparisons on the common path; the
            # content type is read only for a request that took long.
            if status == SWITCHING_PROTOCOLS or (
                elapsed > LONG_LIVED and response.content_type == EVENT_STREAM
            ):
                return response
            counts.buckets[bisect_left(bounds, elapsed)] += 1
            counts.total += elapsed
            return response

        return measure_request

    def response_hook(self) -> ResponseHook:
        """The response hook that counts a parked request with the status of its answer.
        Every request runs it, and it has nothing to do unless a handler raised: one
        truthiness check of a dictionary that is almost always empty."""
        parked = self.parked
        tally = self.tally

        def count_answer(request: web.Request, response: web.StreamResponse) -> None:
            if parked:
                found = parked.pop(id(request), None)
                if found is not None:
                    tally(request, response.status, found.elapsed)

        return count_answer

    def tally(self, request: web.Request, status: int, elapsed: float) -> None:
        """Count one request (off the common path, which the wrapper inlines)."""
        route = request.match_info.route
        counts = self.pending.get(route)
        if counts is None:
            counts = self.pending[route] = RouteTally(len(self.bounds) + 1)
        key = (request.method, status)
        counts.statuses[key] = counts.statuses.get(key, 0) + 1
        counts.buckets[bisect_left(self.bounds, elapsed)] += 1
        counts.total += elapsed

    def fold(self, series: Series) -> None:
        """Move the tallies since the last fold into ``series``."""
        requests = series.family(
            REQUESTS,
            "HTTP requests answered, by route, method and status.",
            "counter",
            ("method", "route", "status"),
        )
        duration = series.family(
            DURATION,
            "Time the handlers took, by route (seconds).",
            "histogram",
            ("route",),
            self.bounds,
        )
        in_flight = series.family(IN_FLIGHT, "Requests being handled now.", "gauge", ())
        if in_flight is not None:
            in_flight.values[()] = self.in_flight()
        if self.parked:
            self._count_stale()
        self.folds += 1
        if not self.pending:
            return
        # No await from here to clear(): no request can tally in between.
        tallies = list(self.pending.items())
        self.pending.clear()
        for route, counts in tallies:
            label = self._label(route)
            if requests is not None:
                values = requests.values
                for (method, status), count in counts.statuses.items():
                    key = (method if method in METHODS else "other", label, str(status))
                    values[key] = values.get(key, 0.0) + count
            if duration is not None:
                duration.add_observations((label,), counts.buckets, counts.total)

    def _count_stale(self) -> None:
        """Count the requests parked before the previous fold with their fallback
        status: no response hook will see their answer (an error page takes
        milliseconds, a fold interval about a second)."""
        folds = self.folds
        stale = [key for key, found in self.parked.items() if found.fold < folds]
        for key in stale:
            found = self.parked.pop(key)
            self.tally(found.request, found.fallback, found.elapsed)

    def _label(self, route: web.AbstractRoute | None) -> str:
        label = self._labels.get(route)
        if label is None:
            label = self._labels[route] = route_label(route)
        return label
