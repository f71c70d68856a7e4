"""A lean websocket subscriber for the load driver: an asyncio protocol that does the
upgrade by hand and reads the server's (unmasked) frames itself.

A subscriber costs the driver a few microseconds per message, less than a server spends
sending it; the driver reports its own CPU use, and near 100% says a rate is the
driver's as much as the server's (CPU time per delivery is the server's either way). No
extension is offered, so neither server compresses.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

# (payload, monotonic receive time in ns): called for every text or binary frame.
OnMessage = Callable[[bytes, int], None]

_PONG = 0x8A
_CLOSE = 0x88


class HandshakeError(ConnectionError):
    pass


class Subscriber(asyncio.Protocol):
    """One websocket; ``opened`` resolves when the server has answered 101."""

    def __init__(self, on_message: OnMessage) -> None:
        self.on_message = on_message
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self._buffer = b""
        self._upgraded = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def send_upgrade(self, host: str, path: str) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        assert self.transport is not None
        self.transport.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        buffer = self._buffer + data if self._buffer else data
        if not self._upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self._buffer = buffer
                return
            status = buffer[: buffer.find(b"\r\n")]
            if b" 101 " not in status + b" ":
                self._fail(HandshakeError(status.decode(errors="replace")))
                return
            self._upgraded = True
            self.opened.set_result(None)
            buffer = buffer[end + 4 :]
        pos, size = 0, len(buffer)
        while size - pos >= 2:
            opcode = buffer[pos] & 0x0F
            length = buffer[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
                head = 10
            end = pos + head + length
            if end > size:
                break
            if opcode in (1, 2):
                self.on_message(buffer[pos + head : end], now)
            elif opcode == 9:
                self._send_control(_PONG, buffer[pos + head : end])
            elif opcode == 8:
                self._send_control(_CLOSE, buffer[pos + head : pos + head + 2])
                assert self.transport is not None
                self.transport.close()
            pos = end
        self._buffer = buffer[pos:] if pos < size else b""

    def _send_control(self, first: int, payload: bytes) -> None:
        # Client frames are masked; a zero mask leaves the payload as it is.
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(struct.pack("!BB4s", first, 0x80 | len(payload), bytes(4)))
            self.transport.write(payload)

    def close(self) -> None:
        self._send_control(_CLOSE, struct.pack("!H", 1000))
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionResetError("the server closed the connection"))
        if not self.closed.done():
            self.closed.set_result(None)

    def _fail(self, exc: Exception) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
            if self.transport is not None:
                self.transport.close()


async def subscribe(url: str, on_message: OnMessage, patience: float = 30.0) -> Subscriber:
    """Open ``ws://host:port/path`` and wait for the server's 101."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(lambda: Subscriber(on_message), host, port)
    protocol.send_upgrade(f"{host}:{port}", parts.path or "/")
    async with asyncio.timeout(patience):
        await protocol.opened
    return protocol
