"""Websockets with the site's limits: ``open_websocket(request)`` and ``SiteWebSocket``.

::

    @routes.websocket("/ws/{room}", name="room")
    async def room(request: web.Request) -> web.WebSocketResponse:
        name = request.match_info["room"]
        hub = broadcast(request)
        async with open_websocket(request) as ws, hub.subscribe(f"room:{name}") as sub:
            ws.forward(sub)                       # channel -> socket
            async for msg in ws:                  # socket -> channel
                await hub.publish(f"room:{name}", msg.json())
        return ws

Before the upgrade: the origin check (403), the process's connection limit (503 with
``Retry-After``), the end of what the request opened (its database session is committed
and its connection given back: a socket may stay open for hours). Then the 101 goes out
with ``X-Request-ID`` and ``Server``, and the socket lives under the ``websockets:``
settings: heartbeat, largest message (1009), idle timeout (1000), a send that waits too
long (1013), compression. Its handler runs inside the site's request core like any
other: an exception before the upgrade is the site's error page; after it, the block
closes the socket (1011; 1013 for a hub that is down), logs the exception once and lets
the handler return the socket, so that no error page follows the 101.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Literal

from aiohttp import WSCloseCode, WSMsgType, hdrs, web
from aiohttp.http import WSMessage

from aiosite.channels.errors import ChannelUnavailable
from aiosite.channels.forwarding import End, Forward, Forwarding
from aiosite.channels.hub import Message, Subscription
from aiosite.channels.json import dumps
from aiosite.channels.live import (
    LIVE_RESPONSE,
    SWEEP_INTERVAL,
    LiveRegistry,
    failed_after_start,
    lift_budget_deadline,
    live_registry,
)
from aiosite.hooks import run_request_finalizers
from aiosite.keys import ORIGIN_CHECKED, REQUEST_ID, REQUEST_ID_HEADER, WEBSOCKET_ORIGIN_CHECK

logger = logging.getLogger("aiosite.channels")

# Seconds a close waits for the client's answering close frame (aiohttp's default) and,
# in all, for the frame to go out to a client that reads nothing; then the connection
# is dropped.
CLOSE_TIMEOUT = 10.0
# The message types ``async for msg in ws`` gives: the client's messages.
_DATA = frozenset({WSMsgType.TEXT, WSMsgType.BINARY})

# What ``forward`` sends for a message: text (str), binary (bytes), or nothing (None).
Transform = Callable[[Message], str | bytes | None]


class Setting(enum.Enum):
    """A keyword of ``open_websocket`` left to the ``websockets:`` settings."""

    FROM_SETTINGS = "from settings"


FROM_SETTINGS = Setting.FROM_SETTINGS
FromSettings = Literal[Setting.FROM_SETTINGS]


class SiteWebSocket(Forwarding, web.WebSocketResponse):
    """aiohttp's ``WebSocketResponse`` (subclassing it is aiohttp's extension point), as
    ``open_websocket`` opens it: ``forward`` feeds it from a subscription, and the site
    closes it when it is idle too long, stuck behind a client that reads nothing, or
    when the site stops.

    ``async for msg in ws`` gives the client's TEXT and BINARY messages and ends when the
    socket closes, whatever closed it (the client, an oversized message, a missed
    heartbeat, the site); ``ws.close_code`` then says which, ``ws.exception()`` the error.
    """

    # Slots, not the instance's __dict__: aiohttp's response sets so many attributes
    # that ours would push its dict past the keys instances can share (30 on CPython
    # 3.11), and each socket would then carry a dict of its own (1.5 KiB, measured).
    __slots__ = (
        "_closer",
        "_last_message",
        "_waiting_for_client",
        "idle_timeout",
        "request",
        "send_timeout",
    )

    def __init__(
        self,
        request: web.Request,
        *,
        protocols: Iterable[str] = (),
        heartbeat: float | None = None,
        max_message_bytes: int = 64 * 1024,
        idle_timeout: float | None = None,
        send_timeout: float = 10.0,
        compress: bool = False,
    ) -> None:
        super().__init__(
            protocols=protocols,
            heartbeat=heartbeat,
            # aiohttp refuses a message of max_msg_size bytes itself (uncompressed; a
            # compressed one only above it): max_message_bytes is the largest accepted.
            max_msg_size=max_message_bytes + 1,
            timeout=CLOSE_TIMEOUT,
            compress=compress,
        )
        self.request = request
        self.idle_timeout = idle_timeout
        self.send_timeout = send_timeout
        self._last_message = 0.0
        self._waiting_for_client = False
        self._forwards = ()
        self._closer: asyncio.Task[None] | None = None

    @property
    def sweep_interval(self) -> float:
        # A client silent too long while the handler waits for it is closed by the
        # site's sweep (the registry), so that a message costs a clock read rather than
        # a timer as receive(timeout=) would (asyncio.timeout arms one per call).
        idle = self.idle_timeout
        return SWEEP_INTERVAL if idle is None else min(SWEEP_INTERVAL, idle / 4)

    # -- reading ----------------------------------------------------------------------

    async def receive(self, timeout: float | None = None) -> WSMessage:  # noqa: ASYNC109
        self._waiting_for_client = True
        try:
            message = await super().receive(timeout)
        finally:
            self._waiting_for_client = False
        if message.type in _DATA:
            # Pings and pongs never come out of receive(): they do not count.
            self._last_message = asyncio.get_running_loop().time()
        return message

    async def __anext__(self) -> WSMessage:
        # receive()'s work written out again: one coroutine less held by every socket
        # that waits for its client.
        self._waiting_for_client = True
        try:
            message = await web.WebSocketResponse.receive(self)
        finally:
            self._waiting_for_client = False
        if message.type not in _DATA:
            # CLOSE, CLOSING, CLOSED, or ERROR (oversized message, missed heartbeat):
            # the socket is closed or closing either way.
            raise StopAsyncIteration
        self._last_message = asyncio.get_running_loop().time()
        return message

    # -- feeding it from the hub ------------------------------------------------------

    def forward(self, subscription: Subscription, *, transform: Transform | None = None) -> Forward:
        """Send each message of ``subscription`` to the client: its JSON as text, or
        what ``transform(message)`` gives (str: text, bytes: binary, None: nothing).
        Nothing runs while the subscription is idle; a sender task runs while messages
        are queued. Stopped when the block ends (or by ``.cancel()`` on what it
        returns). The socket is closed with 1013 (try again later) when the
        subscription falls too far behind (``when_full: disconnect``) or one send waits
        longer than ``websockets.send_timeout``; with 1012 (service restart) after an
        outage of the hub's backend, in which messages may have been missed; with 1001
        when the site stops; with 1011 when ``transform`` raises."""
        if not self.prepared:
            raise RuntimeError("forward() needs an open websocket: use open_websocket()")
        return self._add_forward(Forward(self, subscription, transform))

    async def _send_forwarded(self, forward: Forward, message: Message) -> None:
        transform = forward.transform
        if transform is None:
            # The JSON the backend carried, as is: no encoding per subscriber.
            await self.send_frame(message.payload or dumps(message.data), WSMsgType.TEXT)
            return
        out = transform(message)
        if isinstance(out, str):
            await self.send_str(out)
        elif out is not None:
            await self.send_bytes(out)

    def _forward_ended(self, forward: Forward, why: End, error: Exception | None) -> None:
        if why is End.TOO_SLOW:
            self._too_slow("read too slowly and missed messages")
        elif why is End.STUCK:
            self._too_slow(
                f"was stuck in one send for over {self.send_timeout:g} s (websockets.send_timeout)"
            )
        elif why is End.GAP:
            # Logged once by the hub's backend for every socket: debug here.
            logger.debug("Closed a websocket (%s) with 1012: the hub had a gap", self.request.path)
            self.close_soon(WSCloseCode.SERVICE_RESTART, "messages may have been missed")
        elif why is End.FAILED:
            logger.error(
                "Forwarding %s to a websocket (%s) failed",
                ", ".join(forward.subscription.channels),
                self.request.path,
                exc_info=error,
            )
            self.close_soon(WSCloseCode.INTERNAL_ERROR, "internal error")
        elif why is End.CLOSED and forward.subscription.hub.closed:
            self.close_soon(WSCloseCode.GOING_AWAY, "server shutdown")

    def _too_slow(self, why: str) -> None:
        logger.info("Closed a websocket (%s) with 1013: its client %s", self.request.path, why)
        self.close_soon(WSCloseCode.TRY_AGAIN_LATER, "too slow: messages were missed")

    # -- closing ----------------------------------------------------------------------

    def close_soon(self, code: int = WSCloseCode.OK, reason: str = "") -> None:
        """Close the socket with ``code`` in a task of its own (a caller that must not
        wait for the client's answer: the site's sweep, its shutdown, ``forward``); the
        first close wins. The handler's ``async for msg in ws`` then ends."""
        if self.closed or self._closer is not None or not self.prepared:
            return
        self._closer = asyncio.get_running_loop().create_task(
            self._close_within(code, reason.encode())
        )

    async def _close_within(self, code: int, message: bytes) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.close(code=code, message=message)
        except TimeoutError:
            # A client that reads nothing: the close frame waits behind what it did not
            # read, and it never answers.
            transport = self.request.transport
            if transport is not None:
                transport.abort()

    async def _finish(self, code: int, reason: str, exc: BaseException | None) -> None:
        """The end of ``open_websocket``'s block: stop forwarding, close the socket with
        ``code`` (unless it is closed already) and wait for the close to finish."""
        try:
            await self._stop_forwards()
            self.close_soon(code, reason)
            if self._closer is not None:
                # Shielded: a second cancellation of the handler must not cut it off.
                await asyncio.shield(self._closer)
        except asyncio.CancelledError:
            if exc is None or not isinstance(exc, Exception):
                self.close_soon(WSCloseCode.GOING_AWAY, "server shutdown")
                raise
            self.close_soon(code, reason)
            # The finished close handshake closed the connection, and aiohttp cancels the
            # handler of a lost connection when handler_cancellation is on (its test
            # server's default): the handler's own exception is handled (logged, and the
            # socket returned); the cancellation, which came for the same end, is dropped.
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()

    # -- what the site's sweep and shutdown call (LiveConnection) ----------------------

    def sweep(self, now: float) -> None:
        if self.closed:
            return
        # The client vanished without a close frame: stop feeding it (the handler's
        # receive() has ended already, if it was waiting).
        gone = self.request.transport is None
        if self._forwards:
            self._sweep_forwards(now, gone)
        idle = self.idle_timeout
        if (
            idle is not None
            and not gone
            and self._waiting_for_client
            and now - self._last_message > idle
        ):
            self.close_soon(WSCloseCode.OK, "idle timeout")

    def going_away(self) -> None:
        self.close_soon(WSCloseCode.GOING_AWAY, "server shutdown")


def _close_code(exc: Exception) -> tuple[int, str]:
    """How a socket whose handler raised ``exc`` is closed: its code and reason."""
    if isinstance(exc, ChannelUnavailable):
        return WSCloseCode.TRY_AGAIN_LATER, "try again later"
    if isinstance(exc, web.HTTPException):
        if exc.status == 503:
            return WSCloseCode.TRY_AGAIN_LATER, "try again later"
        if 400 <= exc.status < 500:
            return WSCloseCode.POLICY_VIOLATION, exc.reason[:100]
    return WSCloseCode.INTERNAL_ERROR, "internal error"


class _Opening:
    """``open_websocket``'s context manager (held by the handler as long as its socket)."""

    __slots__ = ("registry", "request", "websocket")

    def __init__(
        self,
        request: web.Request,
        protocols: Iterable[str],
        heartbeat: float | FromSettings | None,
        max_message_bytes: int | FromSettings,
        idle_timeout: float | FromSettings | None,
        compress: bool | FromSettings,
    ) -> None:
        self.request = request
        self.registry: LiveRegistry = live_registry(request)
        config = self.registry.websocket_settings
        self.websocket = SiteWebSocket(
            request,
            protocols=protocols,
            heartbeat=config.heartbeat if heartbeat is FROM_SETTINGS else heartbeat,
            max_message_bytes=(
                config.max_message_bytes
                if max_message_bytes is FROM_SETTINGS
                else max_message_bytes
            ),
            idle_timeout=config.idle_timeout if idle_timeout is FROM_SETTINGS else idle_timeout,
            send_timeout=config.send_timeout,
            compress=config.compress if compress is FROM_SETTINGS else compress,
        )

    async def __aenter__(self) -> SiteWebSocket:
        request = self.request
        if not request.get(ORIGIN_CHECKED):
            # A route the security battery's hook did not run on (added with
            # app.router.add_get): the same check here.
            check = request.config_dict.get(WEBSOCKET_ORIGIN_CHECK)
            if check is not None:
                check(request)
        ws = self.websocket
        registry = self.registry
        registry.admit_websocket(ws)
        try:
            await run_request_finalizers(request)
            request_id = request.get(REQUEST_ID)
            if request_id is not None:
                ws.headers[REQUEST_ID_HEADER] = request_id
            ws.headers[hdrs.SERVER] = registry.server_header
            await ws.prepare(request)
        except BaseException:
            registry.discard(ws)
            raise
        lift_budget_deadline(request)
        ws._last_message = asyncio.get_running_loop().time()
        if registry.closing:  # the site began to stop during the handshake
            ws.going_away()
        return ws

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        ws = self.websocket
        request = self.request
        try:
            if exc is None:
                await ws._finish(WSCloseCode.OK, "", None)
                return False
            if not isinstance(exc, Exception):  # cancelled: the server stops
                await ws._finish(WSCloseCode.GOING_AWAY, "server shutdown", exc)
                return False
            code, reason = _close_code(exc)
            await failed_after_start(request, exc, "websocket", f"closed the websocket with {code}")
            await ws._finish(code, reason, exc)
            # Handled: the handler goes on after its block and returns the socket, so
            # that the core sends no error page after the 101.
            return True
        finally:
            self.registry.discard(ws)
            request[LIVE_RESPONSE] = ws


def open_websocket(
    request: web.Request,
    *,
    protocols: Iterable[str] = (),
    heartbeat: float | FromSettings | None = FROM_SETTINGS,
    max_message_bytes: int | FromSettings = FROM_SETTINGS,
    idle_timeout: float | FromSettings | None = FROM_SETTINGS,
    compress: bool | FromSettings = FROM_SETTINGS,
) -> AbstractAsyncContextManager[SiteWebSocket]:
    """Upgrade ``request`` to a websocket: ``async with open_websocket(request) as ws``.

    Refuses with 403 a browser's upgrade from another site's page (unless
    ``websockets.check_origin`` is off) and with 503 one over
    ``websockets.max_connections``; a request that is no websocket upgrade gets 400.
    ``heartbeat``, ``max_message_bytes``, ``idle_timeout`` and ``compress`` override the
    ``websockets:`` settings for this socket (None: no heartbeat, no idle timeout).
    ``protocols``: the subprotocols the handler speaks, the first the client also
    offers is chosen (``ws.ws_protocol``). The block's end stops its ``forward``s and
    closes the socket: 1000; when the block raised, 1011 (1013 for ChannelUnavailable,
    1008 for a 4xx HTTP exception), the exception logged once and not raised further,
    so that the handler returns the socket.
    """
    return _Opening(request, protocols, heartbeat, max_message_bytes, idle_timeout, compress)
