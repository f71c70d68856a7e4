"""Feeding a websocket or an event stream from a subscription, with no task while idle.

``Forward`` is the subscription's listener: the hub calls it when a message lands in an
empty queue, and it starts a sender task that sends until the queue is empty again and
ends. An idle forward is this one small object (a task with its coroutine and future
per idle socket was over a kilobyte). While a send waits for a client that reads
slowly, the subscription's bounded queue and ``channels.when_full`` protect the
publishers and the other subscribers; the site's sweep ends a forward stuck in one send
for longer than the connection's ``send_timeout``, whatever the queue's policy.

``Forwarding`` is what websockets and event streams share: their forwards, the sweep's
look at them, and stopping them at the end of the handler's block.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from typing import Any

from aiosite.channels.errors import SubscriberTooSlow
from aiosite.channels.hub import Message, Subscription


class End(enum.Enum):
    """Why a forward stopped, for its connection to act on."""

    # The subscription ended: the site stops (its hub closed), or its block ended.
    CLOSED = "closed"
    # The queue overflowed under ``when_full: disconnect``.
    TOO_SLOW = "too slow"
    # One send waited longer than ``send_timeout``.
    STUCK = "stuck"
    # The backend reconnected after an outage: messages may have been missed.
    GAP = "gap"
    # The client is gone.
    GONE = "gone"
    # Sending (a transform) raised.
    FAILED = "failed"


class Forward:
    """One subscription forwarded to one connection (``ws.forward(sub)``,
    ``stream.forward(sub)``). ``cancel()`` stops it; ``done`` says whether it stopped."""

    __slots__ = (
        "connection",
        "event",
        "since",
        "stops_at_gaps",
        "subscription",
        "task",
        "transform",
        "why",
    )

    def __init__(
        self,
        connection: Forwarding,
        subscription: Subscription,
        transform: Callable[[Message], Any] | None,
        *,
        event: bytes | None = None,
        stops_at_gaps: bool = True,
    ) -> None:
        self.connection = connection
        self.subscription = subscription
        self.transform = transform
        # What the connection puts before each message (an event stream's event line).
        self.event = event
        self.stops_at_gaps = stops_at_gaps
        # The running sender, only while messages are queued or being sent.
        self.task: asyncio.Task[None] | None = None
        # When the sender's current send began (the loop's clock).
        self.since = 0.0
        self.why: End | None = None

    @property
    def done(self) -> bool:
        return self.why is not None

    def __call__(self) -> None:
        """The subscription's listener: there is something to look at."""
        if self.why is not None:
            return
        subscription = self.subscription
        if subscription.overflowed:
            # A send in progress is not worth finishing: the client is a queue behind.
            self.end(End.TOO_SLOW)
        elif subscription.gaps and self.stops_at_gaps:
            self.end(End.GAP)
        elif self.task is None:
            if subscription.pending():
                loop = asyncio.get_running_loop()
                self.since = loop.time()
                self.task = loop.create_task(self._send_queued())
            elif subscription.closed:
                self.end(End.CLOSED)
        # Otherwise the running sender takes the new messages and sees the end itself.

    async def _send_queued(self) -> None:
        subscription = self.subscription
        send = self.connection._send_forwarded
        loop = asyncio.get_running_loop()
        try:
            while (message := subscription.get_nowait()) is not None:
                self.since = loop.time()
                await send(self, message)
        except SubscriberTooSlow:
            self.task = None
            self.end(End.TOO_SLOW)
            return
        except (ConnectionError, TimeoutError):
            self.task = None
            self.end(End.GONE)
            return
        except Exception as exc:
            self.task = None
            self.end(End.FAILED, exc)
            return
        # Nothing awaited between the empty queue and here: the next message starts a
        # new sender.
        self.task = None
        if subscription.closed:
            self.end(End.CLOSED)

    def end(self, why: End, error: Exception | None = None) -> None:
        """Stop, and tell the connection why (once)."""
        if self.why is not None:
            return
        self._stop(why)
        self.connection._forward_ended(self, why, error)

    def cancel(self) -> None:
        """Stop forwarding; the connection is left as it is."""
        if self.why is None:
            self._stop(End.CLOSED)

    def _stop(self, why: End) -> None:
        self.why = why
        self.subscription.set_listener(None)
        task = self.task
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def stuck(self, now: float, limit: float) -> bool:
        return self.task is not None and self.why is None and now - self.since > limit


class Forwarding:
    """What a websocket and an event stream share to be fed from subscriptions."""

    __slots__ = ("_forwards",)

    # Set by the class that mixes this in (its __init__; aiohttp's class comes after
    # this one and takes the keywords).
    _forwards: tuple[Forward, ...]
    send_timeout: float

    def _add_forward(self, forward: Forward) -> Forward:
        self._forwards = (*self._forwards, forward)
        forward.subscription.set_listener(forward)
        return forward

    async def _send_forwarded(self, forward: Forward, message: Message) -> None:
        """Send one message of ``forward`` to the client."""
        raise NotImplementedError

    def _forward_ended(self, forward: Forward, why: End, error: Exception | None) -> None:
        """A forward stopped by itself: close or end the connection as ``why`` says."""
        raise NotImplementedError

    def _sweep_forwards(self, now: float, gone: bool) -> None:
        """The site's periodic look: a client that left (``gone``), a send stuck longer
        than ``send_timeout``."""
        for forward in self._forwards:
            if gone:
                forward.end(End.GONE)
            elif forward.stuck(now, self.send_timeout):
                forward.end(End.STUCK)

    async def _stop_forwards(self) -> None:
        """Stop every forward and wait for their senders to finish (shielded from a
        second cancellation of the handler by the caller's own handling)."""
        running: list[asyncio.Task[None]] = []
        for forward in self._forwards:
            forward.cancel()
            task = forward.task
            if task is not None and not task.done():
                running.append(task)
        if running:
            await asyncio.wait(running)
