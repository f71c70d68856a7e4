"""The HTTP protocol aiosite's servers run: aiohttp's, bounded against slow, idle and
hostile clients.

aiohttp bounds only the idle time between requests. A client that sends a request's
head a byte a second, or its body, or connects and sends nothing, holds its connection
(and its share of the process) for as long as it likes; a few hundred such clients
exhaust a process. No library adds these bounds to aiohttp's server, so this module
does, in a subclass of its protocol: a request's head must arrive within
``server.head_timeout`` of its first byte, a body may stall no longer than
``server.body_timeout`` plus a second for every ``server.body_min_rate`` bytes it
brought, and a process holds at most ``server.max_connections`` connections.

One task per server checks every connection a few times a second instead of a timer
per read, so that a request pays one clock read for all of it. Malformed requests are
answered 400 and logged as one throttled WARNING line, not as an ERROR with a traceback
each: those are for our bugs.

The subclass reads some of aiohttp's private protocol state (which request is being
handled, when the connection went idle); aiohttp has no public access to it. The
tests in tests/server/ exercise each of these through real sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, cast

from aiohttp import __version__ as aiohttp_version
from aiohttp import hdrs, web
from aiohttp.http_exceptions import BadHttpMethod
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from aiosite.exceptions import ImproperlyConfigured, one_line
from aiosite.settings import Settings
from aiosite.web.logs import ThrottledLog

logger = logging.getLogger("aiosite.server")

# Seconds a cut-off connection still takes (and discards) what its client sends, so
# that the client reads the answer before the connection closes.
LINGER_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The bounds every connection is held to (the ``server:`` settings)."""

    # No defaults of its own: the server: and security: settings hold them.
    head_timeout: float
    body_timeout: float
    body_min_rate: int
    keepalive_timeout: float
    max_connections: int
    server_header: str

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        server = settings.server
        return cls(
            head_timeout=server.head_timeout,
            body_timeout=server.body_timeout,
            body_min_rate=server.body_min_rate,
            keepalive_timeout=server.keepalive_timeout,
            max_connections=server.max_connections,
            server_header=settings.security.server_header,
        )

    @property
    def check_interval(self) -> float:
        """How often connections are checked: a slow client is cut off at most this
        long after its time is up."""
        return min(1.0, self.head_timeout / 4, self.body_timeout / 4)


def raw_response(status: HTTPStatus, text: str, server_header: str) -> bytes:
    """A whole response written straight to a connection that has no request to answer
    (its head never arrived, or the process is full)."""
    body = f"{status.value} {status.phrase}: {text}\n".encode()
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\n"
        f"Server: {server_header}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


class ConnectionGuard:
    """The connections of one server, checked against their limits a few times a second."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.connections: set[GuardedRequestHandler] = set()
        # What clients can cause at will is logged at most a few lines a minute.
        self.log = ThrottledLog(logger)
        self.head_timed_out = raw_response(
            HTTPStatus.REQUEST_TIMEOUT,
            f"the request's headers did not arrive within {limits.head_timeout:g} seconds.",
            limits.server_header,
        )
        self.busy = raw_response(
            HTTPStatus.SERVICE_UNAVAILABLE,
            "the server has too many connections open; try again shortly.",
            limits.server_header,
        )
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._check_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _check_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.limits.check_interval)
            now = loop.time()
            for connection in list(self.connections):
                connection.check_deadlines(now)


class GuardedRequestHandler(RequestHandler):
    """aiohttp's protocol with the limits of a ``ConnectionGuard``."""

    __slots__ = (
        "_body_cut_off",
        "_body_watch",
        "_guard",
        "_head_started",
        "_last_payload",
        "_refused",
    )

    def __init__(self, manager: web.Server, *, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        # When the first byte of the head awaited now arrived (None: none yet).
        self._head_started: float | None = None
        # The body of the connection's last request (what aiohttp still reads after
        # the answer is not a new request's head).
        self._last_payload: StreamReader = EMPTY_PAYLOAD
        # The request whose body is being received, since when and with how many bytes.
        self._body_watch: tuple[BaseRequest, float, int] | None = None
        self._refused = False
        self._body_cut_off = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        guard = self._guard
        if len(guard.connections) >= guard.limits.max_connections:
            # Answered at once: a client waiting on a full process learns nothing.
            self._refused = True
            guard.log.warning(
                "Refused a connection: %d open, the most server.max_connections allows",
                len(guard.connections),
            )
            stream = cast(asyncio.Transport, transport)
            stream.write(guard.busy)
            stream.close()
            return
        guard.connections.add(self)
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._guard.connections.discard(self)
        self._body_watch = None
        if not self._refused:  # a refused connection set nothing of aiohttp's up
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # Bytes that arrive while no request is being handled, and after the last body
        # (aiohttp reads what a handler left unread after answering), start a head.
        if (
            self._head_started is None
            and self._current_request is None
            and self._last_payload.is_eof()
        ):
            self._head_started = self._loop.time()
        super().data_received(data)
        messages = self._messages
        if messages:  # a head is complete
            self._head_started = None
            self._last_payload = messages[-1][1]

    def check_deadlines(self, now: float) -> None:
        """Cut the connection off if its client is too slow with what it owes."""
        if self._force_close or self._close or self.transport is None:
            return
        request = self._current_request
        if request is not None:
            self._check_body(request, now)
            return
        self._body_watch = None
        if self._messages or not self._last_payload.is_eof():
            # A request about to be handled, or the rest of a body read after the
            # answer (for at most aiohttp's lingering time).
            return
        head_timeout = self._guard.limits.head_timeout
        started = self._head_started
        if self._request_count == 0:
            # A connection's first request: counted from the moment it opened, which is
            # when aiohttp set its first idle deadline.
            opened = self._next_keepalive_close_time - self._keepalive_timeout
            if now - opened > head_timeout:
                # Nothing sent: no request to answer, the connection is just closed.
                self._cut_off_head(partial=started is not None)
        elif started is not None and now - started > head_timeout:
            # Later requests: from the head's first byte; before it, the connection is
            # idle, which aiohttp's keep-alive timeout bounds.
            self._cut_off_head(partial=True)

    def _check_body(self, request: BaseRequest, now: float) -> None:
        payload = request.content
        if payload.is_eof():  # no body, or all of it here: the handler's own time
            self._body_watch = None
            return
        watch = self._body_watch
        transport = self.transport
        if watch is None or watch[0] is not request or not transport or not transport.is_reading():
            # Just started, or reading is paused because the handler does not consume
            # the body as fast as it comes: the client is not late, the clock restarts.
            self._body_watch = (request, now, payload.total_bytes)
            return
        _, since, received_before = watch
        limits = self._guard.limits
        allowed = limits.body_timeout + (payload.total_bytes - received_before) / (
            limits.body_min_rate
        )
        if now - since > allowed:
            self._cut_off_body(request, now - since)

    def _cut_off_head(self, *, partial: bool) -> None:
        guard = self._guard
        if not partial:
            self.force_close()
            return
        guard.log.warning(
            "Cut off a client (%s) whose request headers took over %g seconds",
            self._peer(),
            guard.limits.head_timeout,
        )
        if self.transport is not None:
            self.transport.write(guard.head_timed_out)
        self._close_after_lingering()

    def _cut_off_body(self, request: BaseRequest, seconds: float) -> None:
        self._guard.log.warning(
            "Cut off a client (%s) sending a request body too slowly: %d bytes in %.0f seconds",
            self._peer(),
            request.content.total_bytes,
            seconds,
        )
        # The handler's read of the body raises this, and the site answers with its 408
        # page. aiohttp then reads no more of the body (no lingering time) and closes the
        # connection with ``close``, which lingers here instead.
        request.content.set_exception(
            web.HTTPRequestTimeout(text="The request body arrived too slowly.")
        )
        self._lingering_time = 0.0
        self._body_watch = None
        self._body_cut_off = True

    def close(self) -> None:
        if self._body_cut_off:
            self._close_after_lingering()
        else:
            super().close()

    def _close_after_lingering(self) -> None:
        """Stop taking requests and close once the answer has gone out and the client
        has had a moment to read it. Closing at once, with the bytes the client is
        still sending unread, would reset the connection, and a reset can destroy the
        answer before the client reads it; so the sending side is shut, and what still
        arrives is discarded (aiohttp ignores data once the protocol is closing)."""
        transport = self.transport
        # aiohttp closes the transport it holds when its request loop ends; this one
        # closes after lingering.
        self.transport = None
        RequestHandler.close(self)
        if transport is None or transport.is_closing():
            return
        if transport.can_write_eof():
            transport.write_eof()
        self._loop.call_later(LINGER_SECONDS, transport.close)

    def _peer(self) -> str:
        transport = self.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        return str(peer[0]) if isinstance(peer, tuple) and peer else "unknown address"

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The answer to a request aiohttp could not parse (or a handler error that
        reached it): a malformed request is the client's doing, logged as one
        throttled line; a 5xx keeps aiohttp's log with its traceback."""
        if status >= HTTPStatus.INTERNAL_SERVER_ERROR:
            response = super().handle_error(request, status, exc, message)
        else:
            reason = one_line(exc) if exc is not None else message
            if self._request_count == 1 and isinstance(exc, BadHttpMethod):
                # Not HTTP at all (TLS, a scanner's probe): what a port on the
                # internet gets all day; aiohttp logs it at DEBUG too.
                logger.debug("Not an HTTP request from %s: %s", request.remote, reason)
            else:
                self._guard.log.warning("Malformed request from %s: %s", request.remote, reason)
            if request.writer.output_size > 0:
                raise ConnectionError("a response was already under way")
            phrase = HTTPStatus(status).phrase
            # Nothing of the request is echoed back.
            response = web.Response(
                status=status,
                text=f"{status} {phrase}: the request could not be read as HTTP.\n",
                headers={hdrs.X_CONTENT_TYPE_OPTIONS: "nosniff"},
            )
            response.force_close()
        response.headers[hdrs.SERVER] = self._guard.limits.server_header
        return response


# aiohttp's private protocol state the guard reads or sets: checked when a server starts,
# so that an aiohttp release that renames any of it stops the server with one line
# instead of leaving it unguarded.
_AIOHTTP_STATE = (
    "_close",
    "_current_request",
    "_force_close",
    "_keepalive_timeout",
    "_lingering_time",
    "_loop",
    "_messages",
    "_next_keepalive_close_time",
    "_request_count",
)


def check_aiohttp_state() -> None:
    missing = [name for name in _AIOHTTP_STATE if not hasattr(RequestHandler, name)]
    if missing:
        raise ImproperlyConfigured(
            f"this aiohttp ({aiohttp_version}) has no {', '.join(missing)} in its protocol, "
            "which aiosite's connection limits need; install the aiohttp version aiosite "
            "supports (pip install 'aiohttp>=3.14,<3.15')"
        )


class GuardedServer(web.Server):
    """aiohttp's low-level server, making guarded protocols."""

    def __init__(self, handler: Any, *, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.guard = guard

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(self, guard=self.guard, loop=self._loop, **self._kwargs)


class GuardedAppRunner(web.AppRunner):
    """``web.AppRunner`` whose connections are held to ``limits``: what ``aiosite run``
    (and any server of aiosite's) serves a site with.

    Use it as aiohttp's runner: ``await runner.setup()``, then ``web.TCPSite(runner,
    host, port)`` or ``web.SockSite``; ``await runner.cleanup()`` at the end.
    """

    def __init__(self, app: web.Application, *, limits: ConnectionLimits, **kwargs: Any) -> None:
        kwargs.setdefault("keepalive_timeout", limits.keepalive_timeout)
        super().__init__(app, **kwargs)
        self.guard = ConnectionGuard(limits)

    async def _make_server(self) -> web.Server:
        # The application's startup runs in here; aiohttp has no public way to choose
        # the protocol its server makes, so the server it builds is built again as ours.
        plain = await super()._make_server()
        return GuardedServer(
            plain.request_handler,
            guard=self.guard,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            **plain._kwargs,
        )

    async def setup(self) -> None:
        check_aiohttp_state()
        await super().setup()
        self.guard.start()

    async def cleanup(self) -> None:
        await self.guard.stop()
        await super().cleanup()
