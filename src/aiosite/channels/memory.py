"""The memory backend: channels inside one process (development, tests, one worker)."""

from __future__ import annotations

import collections
import itertools

from aiosite.channels.backend import Receiver


class MemoryBackend:
    max_payload: int | None = None
    listens = False

    def __init__(self, receiver: Receiver, history: int) -> None:
        self._deliver = receiver.deliver
        self._history = history
        # Ids only where they serve: with nothing kept, there is nothing to replay from.
        self.can_replay = history > 0
        self._kept: dict[str, collections.deque[tuple[int, bytes]]] = {}
        self._ids = itertools.count(1)

    async def publish(self, channel: str, payload: bytes) -> str | None:
        # Never waits: delivered to this process's subscribers before it returns.
        if not self._history:
            self._deliver(channel, None, payload)
            return None
        number = next(self._ids)
        kept = self._kept.get(channel)
        if kept is None:
            kept = self._kept[channel] = collections.deque(maxlen=self._history)
        kept.append((number, payload))
        message_id = str(number)
        self._deliver(channel, message_id, payload)
        return message_id

    async def listen(self, channel: str) -> None:
        return None

    async def unlisten(self, channel: str) -> None:
        return None

    async def replay(self, channel: str, after: str) -> list[tuple[str, bytes]]:
        if not (after.isascii() and after.isdigit()):
            return []
        start = int(after)
        kept = self._kept.get(channel, ())
        return [(str(number), payload) for number, payload in kept if number > start]

    async def close(self) -> None:
        self._kept.clear()
