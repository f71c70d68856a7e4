"""The broadcast hub: publish JSON messages on named channels, subscribe to them.

One hub per site (``broadcast(request)``). A publish is encoded once and handed to the
backend, which carries it to every process listening on the channel (the memory backend:
this one); each process decodes it once and puts it in the queue of every local
subscriber, with the encoded bytes beside it for senders that pass it on as is. Queues
are bounded and filled without waiting, so a slow subscriber never stalls a publisher or
the other subscribers: when its queue is full, ``when_full`` decides (drop the oldest
message and count it, or end the subscription).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, get_args

from aiosite.channels.backend import Backend
from aiosite.channels.config import ChannelsSettings, WhenFull
from aiosite.channels.errors import ChannelUnavailable, MessageTooLarge, SubscriberTooSlow
from aiosite.channels.json import dumps, loads

logger = logging.getLogger("aiosite.channels")

# The longest channel name, in UTF-8 bytes: a name is part of every Redis message and
# PostgreSQL NOTIFY, and a name built from a URL must not grow without bound.
MAX_CHANNEL_BYTES = 200
# Control characters (C0, DEL, C1) and lone surrogates: NOTIFY and Redis refuse some, a
# log line or a stream field would be broken by others.
_REFUSED_IN_NAMES = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_WHEN_FULL = frozenset(get_args(WhenFull))

# Called (synchronously, never awaited) when a subscription has something to look at.
Listener = Callable[[], None]


@dataclass(frozen=True, slots=True)
class Message:
    """One message as a subscriber receives it."""

    channel: str
    data: Any
    # The backend's id of the message when it keeps history (for ``Last-Event-ID``).
    id: str | None = None
    # The JSON as the backend carried it (UTF-8): what a websocket or event stream sends
    # as is, rather than encoding ``data`` again for each subscriber.
    payload: bytes = field(default=b"", compare=False, repr=False)


def check_channel(channel: str) -> None:
    """Raise ValueError for a name no backend can carry cleanly."""
    if _REFUSED_IN_NAMES.search(channel) is None and (
        # Four bytes at most per character: most names are not encoded to be measured.
        len(channel) * 4 <= MAX_CHANNEL_BYTES or len(channel.encode()) <= MAX_CHANNEL_BYTES
    ):
        return
    shown = repr(channel if len(channel) <= 60 else channel[:60] + "...")
    raise ValueError(
        f"the channel name {shown} is not one the hub carries: at most "
        f"{MAX_CHANNEL_BYTES} bytes (UTF-8), without control characters"
    )


def _position(message_id: str) -> tuple[int, ...]:
    # Backend ids are "<n>" (memory) or "<ms>-<n>" (Redis): increasing in the order of
    # publishing, across channels too.
    return tuple(int(part) for part in message_id.split("-"))


class Subscription:
    """A subscriber's bounded queue of messages on one or more channels.

    ``async with hub.subscribe("posts") as sub: async for message in sub: ...``; the
    iteration ends when the hub closes (the site stops), and raises SubscriberTooSlow
    when the queue filled under ``when_full: disconnect``.

    A sender that should cost nothing while idle (one per websocket) uses
    ``set_listener`` and ``get_nowait`` instead of iterating: the listener is called
    when there is something to look at, and the sender runs only until the queue is
    empty again.
    """

    # Kept small: a site holds one per open websocket or event stream, mostly idle.
    __slots__ = (
        "_listener",
        "_marks",
        "_one",
        "_queue",
        "_waiter",
        "channels",
        "closed",
        "dropped",
        "gaps",
        "hub",
        "last_event_id",
        "overflowed",
        "queue_size",
        "when_full",
    )

    def __init__(
        self,
        hub: Hub,
        channels: tuple[str, ...],
        queue_size: int,
        when_full: WhenFull,
        last_event_id: str | None,
    ) -> None:
        self.hub = hub
        self.channels = channels
        self.queue_size = queue_size
        self.when_full = when_full
        self.last_event_id = last_event_id
        # Messages dropped because the queue was full (when_full: drop_oldest).
        self.dropped = 0
        # Outages of the backend this subscription lived through: each time, messages
        # published meanwhile may never have reached it (docs/broadcast.md).
        self.gaps = 0
        self.overflowed = False
        self.closed = False
        # One message waits in ``_one``; a deque is made once two wait at the same time
        # (and kept: making one costs as much as a few messages), so a subscription that
        # never fell behind holds none (760 bytes).
        self._one: Message | None = None
        self._queue: collections.deque[Message] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._listener: Listener | None = None
        # Only while a replay's messages may also arrive live: per channel, the position
        # of the newest replayed message (a live one at or before it was given already).
        self._marks: dict[str, tuple[int, ...]] | None = None

    async def __aenter__(self) -> Subscription:
        try:
            await self.hub._add(self)
            if self.last_event_id is not None:
                await self._replay(self.last_event_id)
        except BaseException:
            # Cancelled or failed half-way: nothing stays registered or listened to.
            self._close()
            await self.hub._remove(self)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()
        await self.hub._remove(self)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        while True:
            # get_nowait(), inlined for the common case: a message is there.
            queue = self._queue
            if queue:
                return queue.popleft()
            message = self._one
            if message is not None:
                self._one = None
                return message
            if self.overflowed:
                self.get_nowait()  # raises SubscriberTooSlow
            if self.closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def get_nowait(self) -> Message | None:
        """The next queued message, or None when the queue is empty (look at ``closed``
        to tell an idle subscription from an ended one). Raises SubscriberTooSlow once
        the queue overflowed under ``when_full: disconnect``."""
        queue = self._queue
        if queue:
            return queue.popleft()
        message = self._one
        if message is not None:
            self._one = None
            return message
        if self.overflowed:
            raise SubscriberTooSlow(
                f"the subscriber to {', '.join(self.channels)} fell {self.queue_size} "
                "messages behind"
            )
        return None

    def set_listener(self, listener: Listener | None) -> None:
        """Call ``listener()`` (synchronously, from the hub's fan-out: it must not block,
        and it is never awaited) whenever there is something to look at: a message
        queued into an empty queue, an overflow (``when_full: disconnect``), a gap
        (``gaps`` grew) or the end of the subscription. Called at once when one of
        those is there already. None removes it."""
        self._listener = listener
        if listener is not None and (self.pending() or self.closed or self.overflowed or self.gaps):
            self._notify()

    def pending(self) -> int:
        """Messages waiting in the queue."""
        queue = self._queue
        if queue is not None:
            return len(queue)
        return 0 if self._one is None else 1

    def put(self, message: Message) -> None:
        """Queue ``message`` without waiting (the hub's fan-out)."""
        if self.closed or self.overflowed:
            return
        marks = self._marks
        if marks is not None and message.id is not None and self._replayed(marks, message):
            return
        queue = self._queue
        if queue is not None:
            if not queue:
                queue.append(message)
                self._notify()
            elif len(queue) < self.queue_size:
                queue.append(message)
            elif self._full():
                queue.popleft()
                queue.append(message)
            return
        one = self._one
        if one is None:
            self._one = message
            self._notify()
        elif self.queue_size > 1:
            self._queue = collections.deque((one, message))
            self._one = None
        elif self._full():
            self._one = message

    def _full(self) -> bool:
        """A message came for a full queue: whether the oldest makes way for it."""
        if self.when_full == "disconnect":
            self.overflowed = True
            self._queue = self._one = None
            self._notify()
            return False
        self.dropped += 1
        return True

    def _replayed(self, marks: dict[str, tuple[int, ...]], message: Message) -> bool:
        mark = marks.get(message.channel)
        if mark is None or message.id is None:
            return False
        try:
            if _position(message.id) <= mark:
                return True
        except ValueError:
            pass
        # Past the replay on this channel: nothing more to compare there.
        del marks[message.channel]
        if not marks:
            self._marks = None
        return False

    async def _replay(self, after: str) -> None:
        backend = self.hub.backend
        if not backend.can_replay:
            return
        kept: list[tuple[tuple[int, ...], Message]] = []
        marks: dict[str, tuple[int, ...]] = {}
        for channel in self.channels:
            try:
                replayed = await backend.replay(channel, after)
            except ChannelUnavailable as exc:
                logger.warning("No replay after %s on %s: %s", after, channel, exc)
                continue
            for message_id, payload in replayed:
                try:
                    position = _position(message_id)
                    data = loads(payload)
                except ValueError:
                    continue
                kept.append((position, Message(channel, data, message_id, payload)))
                marks[channel] = max(marks.get(channel, position), position)
        if not kept or self.overflowed:
            return
        # Every channel's kept messages in the order they were published, then what
        # arrived live meanwhile, minus what the replay gave already.
        kept.sort(key=lambda item: item[0])
        live: list[Message] = []
        while (message := self.get_nowait()) is not None:
            live.append(message)
        for _, message in kept:
            self.put(message)
        self._marks = marks
        for message in live:
            self.put(message)

    def _notify(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        listener = self._listener
        if listener is not None:
            try:
                listener()
            except Exception:
                # Not the publisher's nor the other subscribers' problem.
                logger.exception("A subscription's listener failed")

    def _gap(self) -> None:
        if not self.closed:
            self.gaps += 1
            self._notify()

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self._notify()


class Hub:
    """Publish and subscribe on named channels; one per site, on its ``backend``.

    It is also what the backend hands what it receives to (``deliver``) and tells when
    its connection came back after an outage (``reconnected``).
    """

    def __init__(
        self, settings: ChannelsSettings, backend: Callable[[Hub], Backend] | Backend
    ) -> None:
        self.settings = settings
        self._subscribers: dict[str, set[Subscription]] = {}
        # Listens a backend has not confirmed yet: a subscriber to a channel that is
        # being listened to waits for the same confirmation as the first one.
        self._listening: dict[str, asyncio.Task[None]] = {}
        self.backend: Backend = backend(self) if callable(backend) else backend
        limit = settings.max_message_bytes
        if self.backend.max_payload is not None:
            limit = min(limit, self.backend.max_payload)
        self.max_message_bytes = limit
        self.closed = False

    async def publish(self, channel: str, data: Any) -> str | None:
        """Send ``data`` (anything JSON can carry) to every subscriber of ``channel`` in
        every process; its id when the backend keeps history.

        Raises ValueError for a channel name over 200 bytes or with control characters,
        TypeError for data JSON cannot carry, MessageTooLarge for a message over the
        limit and ChannelUnavailable when the backend cannot take it (within
        ``channels.publish_timeout``): a message is never dropped silently.
        """
        if self.closed:
            raise ChannelUnavailable("the broadcast hub is closed: the site has stopped")
        check_channel(channel)
        payload = dumps(data)
        if len(payload) > self.max_message_bytes:
            raise MessageTooLarge(
                f"a message of {len(payload)} bytes on {channel!r} is over the "
                f"{self.max_message_bytes} bytes the hub carries"
                + (
                    " (PostgreSQL NOTIFY's limit)"
                    if self.backend.max_payload == self.max_message_bytes
                    else " (channels.max_message_bytes)"
                )
                + "; publish an id and let subscribers fetch the rest"
            )
        return await self.backend.publish(channel, payload)

    def subscribe(
        self,
        *channels: str,
        queue_size: int | None = None,
        when_full: WhenFull | None = None,
        last_event_id: str | None = None,
    ) -> Subscription:
        """A subscription to ``channels``, to use as ``async with``. ``last_event_id``:
        first the kept messages published after it, when the backend keeps history.

        Raises ValueError for no channel, a channel name ``publish`` would refuse, or a
        ``queue_size`` below 1."""
        if not channels:
            raise ValueError("subscribe() needs at least one channel")
        if len(channels) > 1:
            channels = tuple(dict.fromkeys(channels))
        for channel in channels:
            check_channel(channel)
        if queue_size is None:
            queue_size = self.settings.queue_size
        elif queue_size < 1:
            raise ValueError(f"queue_size must be 1 or more, not {queue_size}")
        if when_full is None:
            when_full = self.settings.when_full
        elif when_full not in _WHEN_FULL:
            raise ValueError(f"when_full must be drop_oldest or disconnect, not {when_full!r}")
        return Subscription(self, channels, queue_size, when_full, last_event_id)

    def subscriber_count(self, channel: str | None = None) -> int:
        """Subscribers in this process, to ``channel`` or to any."""
        if channel is not None:
            return len(self._subscribers.get(channel, ()))
        return len(self._all_subscriptions())

    def deliver(self, channel: str, message_id: str | None, payload: bytes) -> None:
        """Fan a payload the backend received out to this process's subscribers."""
        subscribers = self._subscribers.get(channel)
        if not subscribers:
            return
        try:
            data = loads(payload)
        except ValueError:
            logger.warning("Dropped a message on %r that is not JSON", channel)
            return
        message = Message(channel, data, message_id, payload)
        # No copy of the set: put() never awaits and a listener cannot add or remove a
        # subscription synchronously (both happen in coroutines), so it cannot change
        # while this loop runs.
        for subscription in subscribers:
            subscription.put(message)

    def reconnected(self) -> None:
        """The backend's connection is back after an outage: whatever was published
        meanwhile never reached this process, so every subscription gets a gap."""
        for subscription in self._all_subscriptions():
            subscription._gap()

    async def close(self) -> None:
        """End every subscription and close the backend's connections."""
        self.closed = True
        for subscription in self._all_subscriptions():
            subscription._close()
        await self.backend.close()

    def _all_subscriptions(self) -> set[Subscription]:
        return {sub for subs in self._subscribers.values() for sub in subs}

    async def _add(self, subscription: Subscription) -> None:
        if self.closed:
            raise ChannelUnavailable("the broadcast hub is closed: the site has stopped")
        if not self.backend.listens:
            for channel in subscription.channels:
                self._subscribers.setdefault(channel, set()).add(subscription)
            return
        listens: list[asyncio.Task[None]] = []
        for channel in subscription.channels:
            subscribers = self._subscribers.get(channel)
            if subscribers is None:
                self._subscribers[channel] = {subscription}
                listens.append(self._listen(channel))
            else:
                subscribers.add(subscription)
                pending = self._listening.get(channel)
                if pending is not None:
                    listens.append(pending)
        for listen in listens:
            # Shielded: the listen is shared with the channel's other subscribers.
            await asyncio.shield(listen)

    def _listen(self, channel: str) -> asyncio.Task[None]:
        task = asyncio.create_task(self.backend.listen(channel))
        self._listening[channel] = task

        def listened(task: asyncio.Task[None]) -> None:
            if self._listening.get(channel) is task:
                del self._listening[channel]
            if not task.cancelled() and task.exception() is not None:
                # Retrieved here too, for when every subscriber waiting on it has gone.
                logger.warning("Listening on %r failed: %s", channel, task.exception())

        task.add_done_callback(listened)
        return task

    async def _remove(self, subscription: Subscription) -> None:
        # Every channel first, synchronously: a cancellation cannot leave some behind.
        idle: list[str] = []
        for channel in subscription.channels:
            subscribers = self._subscribers.get(channel)
            if subscribers is None or subscription not in subscribers:
                continue
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[channel]
                idle.append(channel)
        if idle and not self.closed and self.backend.listens:
            # In a task of its own: cancelling the subscriber must not cut a command to
            # the backend's shared connection in half.
            await asyncio.shield(asyncio.create_task(self._unlisten(idle)))

    async def _unlisten(self, channels: Iterable[str]) -> None:
        for channel in channels:
            if self.closed or channel in self._subscribers:
                continue  # the hub stopped, or a subscriber came back meanwhile
            try:
                await self.backend.unlisten(channel)
            except Exception:
                logger.exception("Could not stop listening on %r", channel)
