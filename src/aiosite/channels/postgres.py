"""The PostgreSQL backend: LISTEN/NOTIFY, for sites that have PostgreSQL and no Redis.

Every hub channel travels on one PostgreSQL channel (``channels.postgres_channel``) as
``<hub channel>\\n<json>``: each process LISTENs once, on a connection of its own, and the
hub drops what arrives for channels it has no subscribers for. Publishing is
``SELECT pg_notify(...)`` on a small pool of other connections, since asyncpg runs one
operation at a time on a connection and the listening one must stay free.

NOTIFY carries at most 7999 bytes (the payload must be shorter than 8000 bytes, in the
server's encoding, UTF-8 assumed here), channel name included: a larger message raises
MessageTooLarge before it is sent. Nothing is kept, so there is no replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiosite.channels.backend import Receiver
from aiosite.channels.config import ChannelsSettings
from aiosite.channels.errors import ChannelUnavailable, MessageTooLarge, publish_timed_out
from aiosite.channels.reconnect import Outage, backoff
from aiosite.exceptions import ImproperlyConfigured, one_line

logger = logging.getLogger("aiosite.channels")

# What ``pg_stat_activity`` shows for the hub's connections.
APPLICATION_NAME = "aiosite.channels"
# PostgreSQL refuses a NOTIFY payload of 8000 bytes or more.
NOTIFY_LIMIT = 7999
# Seconds of silence after which the listening connection is asked ``SELECT 1``: a
# server that vanished without closing the socket is noticed too.
CHECK_INTERVAL = 15.0
# Connections that publish, per process (opened when needed, closed when idle).
POOL_SIZE = 4
POOL_IDLE_LIFETIME = 60.0


class PostgresBackend:
    can_replay = False
    listens = True
    # The shortest channel name leaves this much for the JSON; publish() checks each
    # message with its own channel name.
    max_payload: int | None = NOTIFY_LIMIT - 1

    def __init__(self, receiver: Receiver, dsn: str, config: ChannelsSettings) -> None:
        scheme = dsn.partition("://")[0]
        if scheme not in ("postgresql", "postgres"):
            raise ImproperlyConfigured(
                "channels.backend: postgres needs a PostgreSQL URL in channels.url or "
                f"database.url, not a {scheme or 'missing'}:// one"
            )
        import asyncpg

        self._receiver = receiver
        self._deliver = receiver.deliver
        self._dsn = dsn
        self._config = config
        self._timeout = config.publish_timeout
        self._unavailable: tuple[type[BaseException], ...] = (
            OSError,
            TimeoutError,
            asyncpg.PostgresConnectionError,
            asyncpg.InterfaceError,
            # The server shutting down, starting up, or out of connections.
            asyncpg.exceptions.OperatorInterventionError,
            asyncpg.exceptions.InsufficientResourcesError,
        )
        self._refused: type[BaseException] = asyncpg.DataError
        self._pool: Any = None
        self._pool_lock = asyncio.Lock()
        # Hub channels this process has subscribers for (only counted: one LISTEN
        # carries them all).
        self._wanted: set[str] = set()
        self._listener: asyncio.Task[None] | None = None
        # Done after the listening connection's first attempt, whether it worked or not.
        self._first_attempt: asyncio.Future[None] | None = None
        self._outage = Outage("PostgreSQL")
        self._delays = backoff(config.reconnect)

    async def publish(self, channel: str, payload: bytes) -> str | None:
        head = channel.encode() + b"\n"
        if len(head) + len(payload) > NOTIFY_LIMIT:
            raise MessageTooLarge(
                f"a message of {len(payload)} bytes on {channel!r} is over what PostgreSQL "
                f"NOTIFY carries: {NOTIFY_LIMIT} bytes with the channel name, so "
                f"{NOTIFY_LIMIT - len(head)} on this channel; publish an id and let "
                "subscribers fetch the rest, or use the Redis backend"
            )
        # asyncpg's own timeouts, one budget for both steps: it cancels a timed-out
        # query without waiting for the server, where a cancelled task would wait.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        try:
            pool = await self._publishing_pool()
            async with pool.acquire(timeout=self._timeout) as connection:
                await connection.execute(
                    "SELECT pg_notify($1, $2)",
                    self._config.postgres_channel,
                    (head + payload).decode(),
                    timeout=max(deadline - loop.time(), 0.001),
                )
        except TimeoutError:
            raise publish_timed_out(channel, self._timeout) from None
        except self._unavailable as exc:
            raise ChannelUnavailable(
                f"PostgreSQL did not take a message on {channel!r}: {one_line(exc)}"
            ) from exc
        except self._refused as exc:
            # The message itself: a character the database's encoding lacks.
            raise ChannelUnavailable(
                f"PostgreSQL refused a message on {channel!r}: {one_line(exc)}"
            ) from exc
        return None

    async def listen(self, channel: str) -> None:
        self._wanted.add(channel)
        if self._listener is None:
            self._first_attempt = asyncio.get_running_loop().create_future()
            self._listener = asyncio.create_task(self._listen_forever(), name="aiosite.channels")
        first = self._first_attempt
        if first is not None and not first.done():
            # The first subscriber waits (a bounded while) for the LISTEN, so that a
            # message published right after subscribe() returns reaches it.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._timeout):
                    await asyncio.shield(first)

    async def unlisten(self, channel: str) -> None:
        self._wanted.discard(channel)

    async def replay(self, channel: str, after: str) -> list[tuple[str, bytes]]:
        return []

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        self._first_attempt_done()
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                async with asyncio.timeout(self._timeout):
                    await pool.close()
            except TimeoutError:
                pool.terminate()

    async def _publishing_pool(self) -> Any:
        async with self._pool_lock:
            if self._pool is None:
                import asyncpg

                # min_size 0: nothing connects before the first publish.
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=0,
                    max_size=POOL_SIZE,
                    max_inactive_connection_lifetime=POOL_IDLE_LIFETIME,
                    timeout=self._timeout,
                    server_settings={"application_name": APPLICATION_NAME},
                )
            return self._pool

    # --- the listening connection ---------------------------------------------------

    async def _listen_forever(self) -> None:
        self._delays = backoff(self._config.reconnect)
        while True:
            try:
                await self._listen_once()
            except Exception as exc:
                # An outage, or a server that refuses us (a password, a database it
                # does not have): logged once, tried again with backoff.
                self._outage.lost(exc)
            self._first_attempt_done()
            await asyncio.sleep(next(self._delays))

    async def _listen_once(self) -> None:
        import asyncpg

        lost = asyncio.Event()
        connection: Any = None
        try:
            try:
                # One bound for the whole: a server that accepts the connection and
                # then says nothing must not hold the first subscriber forever.
                async with asyncio.timeout(self._timeout):
                    connection = await asyncpg.connect(
                        self._dsn, server_settings={"application_name": APPLICATION_NAME}
                    )
                    connection.add_termination_listener(lambda _: lost.set())
                    await connection.add_listener(self._config.postgres_channel, self._notified)
            except TimeoutError:
                raise ConnectionError(
                    f"PostgreSQL did not let the hub listen within {self._timeout:g} s"
                ) from None
            self._first_attempt_done()
            self._delays = backoff(self._config.reconnect)
            if self._outage.restored(len(self._wanted)):
                # Listening again: what was published meanwhile is the subscribers' gap.
                self._receiver.reconnected()
            await self._watch(connection, lost)
        finally:
            if connection is not None:
                connection.terminate()

    async def _watch(self, connection: Any, lost: asyncio.Event) -> None:
        """Return never: raise when the listening connection is lost."""
        while True:
            try:
                async with asyncio.timeout(CHECK_INTERVAL):
                    await lost.wait()
            except TimeoutError:
                try:
                    async with asyncio.timeout(self._timeout):
                        await connection.fetchval("SELECT 1")
                except TimeoutError:
                    raise ConnectionError(
                        f"PostgreSQL did not answer in {self._timeout:g} s"
                    ) from None
            else:
                raise ConnectionError("PostgreSQL closed the listening connection")

    def _notified(self, connection: Any, pid: int, pg_channel: str, text: str) -> None:
        # The JSON has no newline of its own: the last one ends the channel's name.
        channel, sep, payload = text.rpartition("\n")
        if not sep:
            return  # a NOTIFY on our channel that is not the hub's
        try:
            self._deliver(channel, None, payload.encode())
        except Exception:
            logger.exception("Delivering a message on %r failed", channel)

    def _first_attempt_done(self) -> None:
        first = self._first_attempt
        if first is not None and not first.done():
            first.set_result(None)
