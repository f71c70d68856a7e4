"""A TCP proxy to PostgreSQL (or Redis) that a test can take down and bring back: an
outage for one site, without touching the shared server."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.conftest import TestDatabase


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``target``; ``stop()`` cuts every connection and
    refuses new ones, ``start()`` serves again on the same port. ``connections`` is the
    number of connections open through it."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.target = target
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()

    def url(self, database: TestDatabase) -> str:
        """The test database's URL, through this proxy."""
        host, port = self.target
        return database.url.replace(f"{host}:{port}", f"127.0.0.1:{self.port}")

    async def settle(self, expected: int) -> int:
        """The number of open connections, once it is ``expected`` or after a second."""
        for _ in range(100):
            if self.connections == expected:
                break
            await asyncio.sleep(0.01)
        return self.connections

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, up_writer}
        self.connections += 1

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self.connections -= 1
            self._writers -= {writer, up_writer}
