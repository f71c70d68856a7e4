"""What the hub needs of a backend: carry encoded messages between processes.

A backend publishes payloads (a message's JSON, already encoded and size-checked),
listens on the channels the process has subscribers for, and hands every payload it
receives to its receiver's ``deliver``, the hub's fan-out to local subscribers. It owns
its connections: it opens them on first use, and when one is lost it reconnects with
backoff, listens again on every channel by itself, and then calls its receiver's
``reconnected`` (what was published meanwhile never reached this process). While it
cannot reach its server, ``publish`` raises ChannelUnavailable and ``listen`` only
records the channel for the reconnection.

Message ids, when a backend keeps history, are ``<n>`` or ``<n>-<n>`` (decimal numbers):
increasing in the order of publishing across all channels, so that the hub can sort a
replay of several channels and tell a replayed message from the same one received live.
"""

from __future__ import annotations

from typing import Protocol


class Receiver(Protocol):
    """What a backend hands what it receives to: the hub. Both are called on the event
    loop and must not block."""

    def deliver(self, channel: str, message_id: str | None, payload: bytes) -> None:
        """A payload arrived on ``channel`` (its id when the backend keeps history)."""
        ...

    def reconnected(self) -> None:
        """The listening connection is back (and listens again) after an outage."""
        ...


class Backend(Protocol):
    # Whether ``replay`` can give messages published before a subscriber came.
    can_replay: bool
    # The largest payload the transport carries (None: only the hub's own limit).
    max_payload: int | None
    # Whether ``listen`` and ``unlisten`` do anything (the memory backend's do not, and
    # the hub then spares a subscriber the task and the wait for each).
    listens: bool

    async def publish(self, channel: str, payload: bytes) -> str | None:
        """Send ``payload`` to every process listening on ``channel``; its id when the
        backend keeps history. Raises ChannelUnavailable (within
        ``channels.publish_timeout`` when it talks to a server), never loses it
        silently."""
        ...

    async def listen(self, channel: str) -> None:
        """Start receiving ``channel`` (the first local subscriber came)."""
        ...

    async def unlisten(self, channel: str) -> None:
        """Stop receiving ``channel`` (its last local subscriber left)."""
        ...

    async def replay(self, channel: str, after: str) -> list[tuple[str, bytes]]:
        """The kept messages of ``channel`` published after the id ``after``, oldest
        first; [] when ``after`` is unknown or nothing is kept."""
        ...

    async def close(self) -> None: ...
