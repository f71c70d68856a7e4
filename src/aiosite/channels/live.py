"""The websockets and event streams a site holds open: counted against their limits,
watched, and closed when the site stops.

One registry per site (``LIVE``). A connection is admitted before its upgrade or its
first byte (503 with ``Retry-After`` over ``websockets.max_connections`` or
``sse.max_connections``) and discarded when its handler is done. While any is open, one
task per site sweeps them a few times a second: a websocket idle too long, a client
gone without a word, a send stuck behind a client that reads nothing. One task for all
of them, rather than a timer per connection or per message: a message costs a clock
read, never a timer. When the site stops (``app.on_shutdown``: SIGTERM or SIGINT
to ``aiosite run``, ``runner.cleanup()``), every websocket is closed with 1001 (going
away) and every event stream ended, and the shutdown waits a moment for their handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from aiosite.channels.config import SseSettings, WebSocketSettings
from aiosite.channels.errors import ChannelUnavailable
from aiosite.exceptions import one_line
from aiosite.hooks import HOOKS, run_request_finalizers
from aiosite.keys import BUDGET_DEADLINE, state_of

logger = logging.getLogger("aiosite.channels")
# The request core's logger: an exception a live handler raises is logged as the core
# logs any other handler's.
request_logger = logging.getLogger("aiosite.request")

# Seconds between sweeps; a connection may ask for shorter (a short idle timeout).
SWEEP_INTERVAL = 1.0
# Seconds the shutdown waits for the handlers of closed connections to finish; the
# server then cancels what is left (aiohttp's shutdown timeout).
SHUTDOWN_GRACE = 2.0
# What a refused client is told to wait, in seconds.
RETRY_AFTER = "5"
# A refusal is logged at most once in this many seconds (clients can cause it at will).
_LOG_EVERY = 10.0


class LiveConnection(Protocol):
    """What the registry needs of a websocket or an event stream."""

    @property
    def sweep_interval(self) -> float:
        """How often ``sweep`` must run for this connection, in seconds."""
        ...

    def sweep(self, now: float) -> None:
        """Check the connection (the loop's time is ``now``); must not block."""
        ...

    def going_away(self) -> None:
        """Start closing: the site is stopping."""
        ...


@dataclass(frozen=True, slots=True)
class LiveCounts:
    """Open websockets and event streams of one process's site."""

    websockets: int
    event_streams: int

    @property
    def total(self) -> int:
        return self.websockets + self.event_streams


class LiveRegistry:
    """The live connections of one site (``LIVE``)."""

    def __init__(self, websockets: WebSocketSettings, sse: SseSettings, server_header: str) -> None:
        self.websocket_settings = websockets
        self.sse_settings = sse
        # Read once: the 101 and an event stream's head carry it (the response hooks that
        # set it on other responses do not run for a response the handler prepared).
        self.server_header = server_header
        self.websockets: set[LiveConnection] = set()
        self.streams: set[LiveConnection] = set()
        # Set once the site stops: no more are admitted.
        self.closing = False
        self._interval = SWEEP_INTERVAL
        self._sweeper: asyncio.Task[None] | None = None
        self._emptied: asyncio.Event | None = None
        self._refused = 0
        self._refusal_logged = -_LOG_EVERY

    def counts(self) -> LiveCounts:
        return LiveCounts(len(self.websockets), len(self.streams))

    def admit_websocket(self, connection: LiveConnection) -> None:
        """Count ``connection`` in, or raise 503 when the process holds its most."""
        self._admit(
            connection,
            self.websockets,
            self.websocket_settings.max_connections,
            "websockets",
            "websockets.max_connections",
        )

    def admit_stream(self, connection: LiveConnection) -> None:
        """Count ``connection`` in, or raise 503 when the process holds its most."""
        self._admit(
            connection,
            self.streams,
            self.sse_settings.max_connections,
            "event streams",
            "sse.max_connections",
        )

    def _admit(
        self,
        connection: LiveConnection,
        members: set[LiveConnection],
        limit: int,
        what: str,
        setting: str,
    ) -> None:
        if self.closing:
            raise web.HTTPServiceUnavailable(
                text="The site is restarting; try again shortly.",
                headers={"Retry-After": RETRY_AFTER},
            )
        if len(members) >= limit:
            self._log_refusal(what, limit, setting)
            raise web.HTTPServiceUnavailable(
                text="The server holds as many live connections as it can; try again shortly.",
                headers={"Retry-After": RETRY_AFTER},
            )
        members.add(connection)
        if self._emptied is not None:
            self._emptied.clear()
        self._interval = min(self._interval, connection.sweep_interval)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(
                self._sweep_while_open(), name="aiosite live connections"
            )

    def discard(self, connection: LiveConnection) -> None:
        """Count ``connection`` out (its handler is done)."""
        self.websockets.discard(connection)
        self.streams.discard(connection)
        if not (self.websockets or self.streams) and self._emptied is not None:
            self._emptied.set()

    def _log_refusal(self, what: str, limit: int, setting: str) -> None:
        self._refused += 1
        now = asyncio.get_running_loop().time()
        if now - self._refusal_logged >= _LOG_EVERY:
            logger.warning(
                "Refused %d live connection(s) with 503: %d %s open, the most %s allows",
                self._refused,
                limit,
                what,
                setting,
            )
            self._refusal_logged = now
            self._refused = 0

    async def _sweep_while_open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.websockets or self.streams:
                await asyncio.sleep(self._interval)
                now = loop.time()
                for connection in (*self.websockets, *self.streams):
                    try:
                        connection.sweep(now)
                    except Exception:
                        logger.exception("Checking the live connection %r failed", connection)
        finally:
            # Nothing is awaited between the last check of the sets and here, so no
            # connection is admitted unswept: the next one starts a new task.
            self._sweeper = None
            self._interval = SWEEP_INTERVAL

    async def shutdown(self, app: web.Application) -> None:
        """``app.on_shutdown``: close every websocket with 1001 and end every event
        stream, then wait (up to SHUTDOWN_GRACE seconds) for their handlers."""
        self.closing = True
        live = (*self.websockets, *self.streams)
        if live:
            self._emptied = emptied = asyncio.Event()
            for connection in live:
                connection.going_away()
            try:
                async with asyncio.timeout(SHUTDOWN_GRACE):
                    await emptied.wait()
            except TimeoutError:
                counts = self.counts()
                logger.warning(
                    "%d websocket(s) and %d event stream(s) were still open %g s after the "
                    "shutdown began; the server cancels their handlers",
                    counts.websockets,
                    counts.event_streams,
                    SHUTDOWN_GRACE,
                )
        await self.stop()

    async def stop(self) -> None:
        sweeper = self._sweeper
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper


LIVE: web.AppKey[LiveRegistry] = web.AppKey("aiosite.live_connections", LiveRegistry)
# The websocket or event stream a handler's block opened, set when the block ends: an
# exception raised after it gets no error page (the response went out already).
LIVE_RESPONSE: web.RequestKey[web.StreamResponse] = web.RequestKey(
    "aiosite.live_response", web.StreamResponse
)


def live_registry(target: web.Request | web.Application) -> LiveRegistry:
    registry: LiveRegistry = state_of(target)[LIVE]
    return registry


def live_connections(target: web.Request | web.Application) -> LiveCounts:
    """How many websockets and event streams the site holds open in this process."""
    return live_registry(target).counts()


def lift_budget_deadline(request: web.Request) -> None:
    """End the route's budget timeout (``@budget(timeout=...)``) for an open websocket or
    event stream: it bounds the time to open one, not how long it stays open."""
    deadline = request.get(BUDGET_DEADLINE)
    if deadline is not None and not deadline.expired():
        deadline.reschedule(None)


def hub_unavailable(request: web.Request, exc: ChannelUnavailable, outcome: str) -> None:
    """The one line that says the hub failed a request, and what became of the request
    (``outcome``: "answered 503", "closed the websocket with 1013", ...)."""
    logger.warning(
        "The broadcast hub is unavailable (%s %s): %s; %s",
        request.method,
        request.path,
        one_line(exc.__cause__ or exc),
        outcome,
    )


async def failed_after_start(request: web.Request, exc: Exception, what: str, outcome: str) -> None:
    """What a handler raised after its websocket or event stream (``what``) went out:
    no error page can follow, so the connection ends (``outcome`` says how) and the
    exception is logged once, here rather than by the core; what the request opened
    meanwhile is finished as after any failure (rolled back)."""
    try:
        await run_request_finalizers(request, exc)
    except Exception as failure:
        request_logger.error(
            "Finishing the work of %s %s after its failure failed",
            request.method,
            request.path,
            exc_info=failure,
        )
    if isinstance(exc, ChannelUnavailable):
        hub_unavailable(request, exc, outcome)
    elif isinstance(exc, ConnectionError):
        logger.debug("The client of %s %s left: %s", request.method, request.path, exc)
    elif isinstance(exc, web.HTTPException):
        request_logger.info(
            "%s %s raised %d %s after its %s had started; %s",
            request.method,
            request.path,
            exc.status,
            exc.reason,
            what,
            outcome,
        )
    else:
        hooks = request.config_dict.get(HOOKS)
        hint = hooks.exception_hint(exc) if hooks is not None else None
        request_logger.error(
            "Unhandled %s in %s %s after its %s had started; %s%s",
            type(exc).__name__,
            request.method,
            request.path,
            what,
            outcome,
            f"\n{hint}" if hint else "",
            exc_info=exc,
        )
