"""What the broadcast hub raises."""

from __future__ import annotations

from aiosite.exceptions import AiositeError


class ChannelUnavailable(AiositeError):
    """The hub's backend (Redis, PostgreSQL) could not be reached or did not answer in
    time, so a message was not published: nobody was told it was. A handler that lets it
    escape answers 503 with ``Retry-After``; the hub reconnects by itself."""


class MessageTooLarge(AiositeError, ValueError):
    """A message whose JSON is larger than the hub carries (``channels.max_message_bytes``,
    or PostgreSQL NOTIFY's 7999 bytes): publish an id and let subscribers fetch the rest."""


class SubscriberTooSlow(AiositeError):
    """Raised to a subscriber whose queue filled under ``when_full: disconnect``: it read
    too slowly and has missed messages, so its subscription ended."""


def publish_timed_out(channel: str, seconds: float) -> ChannelUnavailable:
    """What a backend that talks to a server raises when a publish took too long."""
    return ChannelUnavailable(
        f"publishing on {channel!r} took over {seconds:g} s (channels.publish_timeout)"
    )
