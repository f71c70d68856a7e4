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

When the server stops, aiohttp closes every connection at once, the idle keep-alive
connections a proxy in front holds included; the proxy may have sent a request on one
at that very moment, and it does not resend a POST elsewhere (nor should it). So
connections are drained instead: every answer from then on says ``Connection: close``,
and idle connections stay open for up to ``drain_timeout`` seconds, for the proxy to
close them itself (its idle timeout is shorter) or use them once more.

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
import os
import socket
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, cast

from aiohttp import __version__ as aiohttp_version
from aiohttp import hdrs, web
from aiohttp.http_exceptions import BadHttpMethod
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from aiosite.exceptions import ImproperlyConfigured, one_line
from aiosite.settings import Settings
from aiosite.web.logs import ThrottledLog

logger = logging.getLogger("aiosite.server")

# Seconds a cut-off connection still takes (and discards) what its client sends, so
# that the client reads the answer before the connection closes.
LINGER_SECONDS = 2.0
# Seconds requests in flight still get after a drain that used up their shutdown time
# (aiohttp takes a timeout of 0 as none at all).
MIN_IN_FLIGHT_SECONDS = 0.1


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
        # Set when the server stops: each answer closes its connection.
        self.draining = False
        # Resolved when the last connection closes, while a drain waits for that.
        self._emptied: asyncio.Future[None] | None = None

    def forget(self, connection: GuardedRequestHandler) -> None:
        self.connections.discard(connection)
        emptied = self._emptied
        if emptied is not None and not self.connections and not emptied.done():
            emptied.set_result(None)

    async def drain(self, seconds: float) -> None:
        """Until every connection has closed, for at most ``seconds``."""
        if seconds <= 0 or not self.connections:
            return
        self._emptied = emptied = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(seconds):
                await emptied
        except TimeoutError:
            pass
        finally:
            self._emptied = None

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
        self._guard.forget(self)
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

    async def finish_response(
        self, request: BaseRequest, resp: StreamResponse, start_time: float | None
    ) -> tuple[StreamResponse, bool]:
        if self._guard.draining and isinstance(resp, StreamResponse) and not resp.prepared:
            # The server is stopping: the answer tells the client (a proxy's pool) not
            # to send another request on this connection, which closes after it. A
            # response its handler already started went out without it; its connection
            # then waits, idle, with the others.
            resp.force_close()
        return await super().finish_response(request, resp, start_time)

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


# aiohttp's private protocol state the guard reads or sets (and a method it extends):
# checked when a server starts, so that an aiohttp release that renames any of it stops
# the server with one line instead of leaving it unguarded.
_AIOHTTP_STATE = (
    "_close",
    "_current_request",
    "_force_close",
    "finish_response",  # where a draining connection's answers get Connection: close
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
        # Seconds the drain took, which come off the time requests in flight get.
        self._drained_for = 0.0
        self._closed_all = False

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(self, guard=self.guard, loop=self._loop, **self._kwargs)

    def pre_shutdown(self) -> None:
        """The listening sockets are closed: from now on, every answer closes its
        connection. aiohttp closes every connection here instead, idle or not; that is
        left to ``drain``."""
        self.guard.draining = True

    async def drain(self, seconds: float) -> None:
        """Wait up to ``seconds`` for the connections to close (a proxy closes
        its idle ones; one used again closes after its answer), then close the rest as
        aiohttp does: idle ones at once, busy ones after their answer."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        await self.guard.drain(seconds)
        self._drained_for = loop.time() - started
        self._close_all()

    def _close_all(self) -> None:
        if not self._closed_all:
            self._closed_all = True
            super().pre_shutdown()

    async def shutdown(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 - aiohttp's
        # An idle connection not closed yet would hold aiohttp's shutdown for all of
        # ``timeout``.
        self._close_all()
        if timeout is not None:
            # Requests in flight ran on during the drain: the timeout counts from the
            # start of the shutdown, so that the drain adds nothing to how long it takes.
            timeout = max(timeout - self._drained_for, MIN_IN_FLIGHT_SECONDS)
        await super().shutdown(timeout)


class GuardedAppRunner(web.AppRunner):
    """``web.AppRunner`` whose connections are held to ``limits``: what ``aiosite run``
    (and any server of aiosite's) serves a site with.

    Use it as aiohttp's runner: ``await runner.setup()``, then ``web.TCPSite(runner,
    host, port)`` or ``web.SockSite``; ``await runner.cleanup()`` at the end.

    ``drain_timeout``: seconds ``cleanup()`` keeps idle connections open for the proxy
    in front to close them (``server.drain_timeout``); 0, the default, closes them at
    once, as a server browsers talk to directly should (they keep idle connections for
    minutes). The drain counts against ``shutdown_timeout``: requests in flight get
    that long from the start of the shutdown, drain included, so a drain no longer than
    it makes the stop no longer (``aiosite serve`` bounds it so).
    """

    def __init__(
        self,
        app: web.Application,
        *,
        limits: ConnectionLimits,
        drain_timeout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("keepalive_timeout", limits.keepalive_timeout)
        super().__init__(app, **kwargs)
        self.guard = ConnectionGuard(limits)
        self.drain_timeout = drain_timeout
        # Connections taken from the listening sockets as they close, to be served.
        self._waiting: list[socket.socket] = []

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

    async def shutdown(self) -> None:
        """aiohttp's cleanup awaits this between closing the listening sockets (and
        ``GuardedServer.pre_shutdown``) and waiting for requests in flight: the site's
        shutdown (websockets closed with 1001, event streams ended) and the drain run
        side by side, so that the site's does not wait for the drain."""
        server = self.server
        if not isinstance(server, GuardedServer):
            await super().shutdown()
            return
        drain = asyncio.ensure_future(self._drain(server))
        try:
            await super().shutdown()
        finally:
            await drain

    async def _drain(self, server: GuardedServer) -> None:
        loop = asyncio.get_running_loop()
        waiting, self._waiting = self._waiting, []
        for connection in waiting:
            try:
                await loop.connect_accepted_socket(server, connection)
            except OSError:
                connection.close()
        await server.drain(self.drain_timeout)

    def _accept_waiting(self) -> None:
        """Take the connections the kernel completed on the listening sockets that the
        event loop has not accepted yet. Closing a listening socket resets them, and a
        proxy may have sent a request on one already (a POST it does not resend); taken
        in the same tick as the sockets close (aiohttp's site.stop() awaits nothing),
        they are served, drained like the others."""
        for site in self.sites:
            if getattr(site, "_ssl_context", None) is not None:
                continue  # TLS is the asyncio server's to set up: its connections stay
            # aiohttp keeps a site's asyncio server private; without it, nothing is taken.
            listeners = getattr(getattr(site, "_server", None), "sockets", None) or ()
            for listener in listeners:
                if listener.type != socket.SOCK_STREAM:
                    continue
                # A second descriptor of the same socket: closing it leaves the loop's.
                with socket.socket(
                    listener.family, listener.type, fileno=os.dup(listener.fileno())
                ) as same:
                    same.setblocking(False)
                    while True:
                        try:
                            connection, _ = same.accept()
                        except OSError:  # none left (EAGAIN), or out of descriptors
                            break
                        self._waiting.append(connection)

    async def cleanup(self) -> None:
        try:
            self._accept_waiting()
            # The guard goes on checking the connections the drain keeps open.
            await super().cleanup()
        finally:
            for connection in self._waiting:  # setup failed: nothing serves them
                connection.close()
            self._waiting = []
            await self.guard.stop()
