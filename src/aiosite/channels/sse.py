"""Server-sent events: ``stream_channel(request, "posts")`` and ``open_event_stream``.

A ``text/event-stream`` response (aiohttp-sse's ``EventSourceResponse``) fed from the
broadcast hub: each message goes out with its ``id:`` (when the backend keeps history)
and its JSON as ``data:``; a comment every ``sse.keepalive`` seconds keeps proxies and
browsers from dropping a quiet stream. A browser that reconnects sends the last id it
saw (``Last-Event-ID``), and the messages it missed are sent first, where the backend
keeps them (memory, Redis); for the same reason a stream ends itself after an outage of
such a backend, in which messages may have been missed. Streams count against
``sse.max_connections`` (503 beyond), end when the client goes (found within about a
second) and end cleanly when the site stops.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType

from aiohttp import hdrs, web
from aiohttp_sse import EventSourceResponse

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
from aiosite.keys import REQUEST_ID, REQUEST_ID_HEADER

logger = logging.getLogger("aiosite.channels")

LAST_EVENT_ID = "Last-Event-ID"
# The end of a line of the stream; also given to aiohttp-sse, so that both agree.
_SEP = "\r\n"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")

# What ``forward`` sends as an event's data for a message (None: nothing).
EventTransform = Callable[[Message], str | None]


class SiteEventStream(Forwarding, EventSourceResponse):
    """aiohttp-sse's ``EventSourceResponse`` as the site opens it: ``send(data, id=,
    event=)`` as there, ``forward`` to feed it from a subscription, ``wait()`` until it
    ends (the client left, the site stopped, the forwarded subscription ended)."""

    # Slots, not the instance's __dict__ (see SiteWebSocket).
    __slots__ = ("request", "send_timeout")

    sweep_interval = SWEEP_INTERVAL

    def __init__(self, request: web.Request, *, keepalive: float, send_timeout: float) -> None:
        super().__init__(ping_interval=keepalive, send_timeout=send_timeout, sep=_SEP)
        self.request = request
        self.send_timeout = send_timeout
        self._forwards = ()

    def forward(
        self,
        subscription: Subscription,
        *,
        event: str | None = None,
        transform: EventTransform | None = None,
        end_on_gap: bool = True,
    ) -> Forward:
        """Send each message of ``subscription`` as an event (named ``event``; the
        browser's ``message`` event when None) with the message's id, its data as JSON
        or what ``transform(message)`` gives (None: skipped). Nothing runs while the
        subscription is idle. The stream ends when the subscription does, when it falls
        too far behind (``when_full: disconnect``) and, with ``end_on_gap``, after an
        outage of a hub backend that keeps history: each time the browser reconnects
        and gets what it missed through ``Last-Event-ID``. A client stuck in one write
        longer than ``sse.send_timeout`` is dropped."""
        if not self.prepared:
            raise RuntimeError("forward() needs a started stream: use open_event_stream()")
        if event is not None and _LINE_BREAK.search(event):
            raise ValueError("an event name must not contain line breaks")
        return self._add_forward(
            Forward(
                self,
                subscription,
                transform,
                event=None if event is None else f"event: {event}{_SEP}".encode(),
                stops_at_gaps=end_on_gap and subscription.hub.backend.can_replay,
            )
        )

    async def _send_forwarded(self, forward: Forward, message: Message) -> None:
        if not self.is_connected():
            raise ConnectionResetError("the event stream has ended")
        transform = forward.transform
        if transform is None:
            data = message.payload
            # The JSON the backend carried, as is; encoded again only when it is not
            # one line (another publisher's indented JSON).
            if not data or b"\n" in data or b"\r" in data:
                data = dumps(message.data)
            lines = [data]
        else:
            text = transform(message)
            if text is None:
                return
            lines = [line.encode() for line in _LINE_BREAK.split(text)]
        sep = _SEP.encode()
        frame = bytearray()
        if message.id is not None:
            frame += b"id: " + message.id.encode() + sep
        if forward.event is not None:
            frame += forward.event
        for line in lines:
            frame += b"data: " + line + sep
        frame += sep
        # No timer per event: the site's sweep drops a client stuck longer than
        # send_timeout.
        await self.write(bytes(frame))

    def _forward_ended(self, forward: Forward, why: End, error: Exception | None) -> None:
        path = self.request.path
        transport = self.request.transport
        if why is End.TOO_SLOW:
            logger.info("Ended an event stream (%s): its client read too slowly", path)
            if transport is not None and transport.get_write_buffer_size():
                # Ending politely would wait behind what it has not read.
                transport.abort()
        elif why is End.STUCK:
            logger.info(
                "Dropped an event stream (%s): its client was stuck in one write for over "
                "%g s (sse.send_timeout)",
                path,
                self.send_timeout,
            )
            if transport is not None:
                transport.abort()
        elif why is End.GAP:
            # Logged once by the hub's backend for every stream: debug here.
            logger.debug("Ended an event stream (%s): the hub had a gap", path)
        elif why is End.FAILED:
            logger.error(
                "Forwarding %s to an event stream (%s) failed",
                ", ".join(forward.subscription.channels),
                path,
                exc_info=error,
            )
        if self.is_connected():
            self.stop_streaming()

    # -- what the site's sweep and shutdown call (LiveConnection) ----------------------

    def sweep(self, now: float) -> None:
        if not self.is_connected():
            return
        # The client left; a quiet stream would otherwise notice only when its next
        # keep-alive comment fails.
        gone = self.request.transport is None
        if self._forwards:
            self._sweep_forwards(now, gone)
        if gone and self.is_connected():
            self.stop_streaming()

    def going_away(self) -> None:
        if self.is_connected():
            self.stop_streaming()


class _StreamOpening:
    """``open_event_stream``'s context manager, in steps ``stream_channel`` interleaves
    with its subscription (subscribed before the head goes out, so that a hub that is
    down is still a 503 page)."""

    __slots__ = ("registry", "request", "stream")

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.registry: LiveRegistry = live_registry(request)
        config = self.registry.sse_settings
        self.stream = SiteEventStream(
            request, keepalive=config.keepalive, send_timeout=config.send_timeout
        )

    def admit(self) -> SiteEventStream:
        self.registry.admit_stream(self.stream)
        return self.stream

    async def start(self) -> None:
        request, stream = self.request, self.stream
        await run_request_finalizers(request)
        request_id = request.get(REQUEST_ID)
        if request_id is not None:
            stream.headers[REQUEST_ID_HEADER] = request_id
        stream.headers[hdrs.SERVER] = self.registry.server_header
        await stream.prepare(request)
        lift_budget_deadline(request)
        retry_ms = self.registry.sse_settings.retry_ms
        if retry_ms:
            # An event of its own without data: sets the browser's reconnection delay.
            try:
                await stream.write(f"retry: {retry_ms}{_SEP}{_SEP}".encode())
            except ConnectionError:
                stream.stop_streaming()  # gone already: the handler's sends fail
        if self.registry.closing:  # the site began to stop while this one started
            stream.going_away()

    async def finish(self, exc: BaseException | None) -> bool:
        """Stop the stream and its forwards; True when ``exc``, raised after the stream
        started, was handled here (logged once, the connection closed): the handler
        then returns the stream, and no error page follows it."""
        stream, request = self.stream, self.request
        try:
            await stream._stop_forwards()
            if stream.is_connected():
                stream.stop_streaming()
            if not stream.prepared:
                return False
            request[LIVE_RESPONSE] = stream
            if not isinstance(exc, Exception):
                return False
            await failed_after_start(request, exc, "event stream", "ended the event stream")
            # Closed rather than ended cleanly: the browser sees the failure, and
            # reconnects.
            transport = request.transport
            if transport is not None:
                transport.close()
            return True
        finally:
            self.registry.discard(stream)

    async def __aenter__(self) -> SiteEventStream:
        self.admit()
        try:
            await self.start()
        except BaseException:
            self.registry.discard(self.stream)
            raise
        return self.stream

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return await self.finish(exc)


def open_event_stream(request: web.Request) -> AbstractAsyncContextManager[SiteEventStream]:
    """Start a ``text/event-stream`` response: ``async with open_event_stream(request)
    as stream: await stream.send(json_text, id=..., event=...)``, then ``return stream``.

    503 beyond ``sse.max_connections``; keep-alive comments every ``sse.keepalive``
    seconds; ``retry:`` of ``sse.retry_ms``. ``stream.last_event_id`` is the browser's
    ``Last-Event-ID``. ``await stream.wait()`` waits until the client leaves or the site
    stops (``stream.is_connected()`` says whether it still may send). An exception in
    the block ends the stream (the connection is closed) and is logged once, and not
    raised further: the handler returns the stream.
    """
    return _StreamOpening(request)


async def stream_channel(
    request: web.Request,
    *channels: str,
    event: str | None = None,
    last_event_id: bool = True,
    transform: EventTransform | None = None,
) -> web.StreamResponse:
    """A handler's whole answer: the messages published on ``channels`` as server-sent
    events, until the client leaves or the site stops::

        @routes.get("/events", name="events")
        async def events(request: web.Request) -> web.StreamResponse:
            return await stream_channel(request, "posts")

    ``last_event_id``: resume after the browser's ``Last-Event-ID`` (the messages it
    missed first, where the backend keeps them), and end the stream after an outage of
    such a backend so that the browser resumes. ``event`` names the events (the
    browser's ``message`` event when None); ``transform(message)`` gives an event's data
    instead of the message's JSON (None: skipped).
    """
    # Imported here: the package imports this module for its exports.
    from aiosite.channels import broadcast

    after = (request.headers.get(LAST_EVENT_ID) or None) if last_event_id else None
    opening = _StreamOpening(request)
    stream = opening.admit()
    try:
        async with broadcast(request).subscribe(*channels, last_event_id=after) as subscription:
            await opening.start()
            stream.forward(subscription, event=event, transform=transform, end_on_gap=last_event_id)
            await stream.wait()
    except BaseException as exc:
        if await opening.finish(exc):
            return stream
        raise
    await opening.finish(None)
    return stream
