"""The Redis backend: Redis pub/sub between processes and hosts, and a capped stream per
channel for replay (``Last-Event-ID``) when ``channels.history`` is above 0.

Publishing goes through the site's Redis client factory (its timeouts, its retry of a
dead pooled connection). Receiving goes through one pub/sub connection per process, read
by one task started at the first ``listen``: it reconnects with backoff when the
connection is lost and subscribes again to every channel that still has subscribers.

Every message travels as ``<id>\\n<payload>`` (the id is empty without history), so
processes with different ``history`` settings still understand each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import TYPE_CHECKING, Any

from aiosite.channels.backend import Receiver
from aiosite.channels.config import ChannelsSettings
from aiosite.channels.errors import ChannelUnavailable, publish_timed_out
from aiosite.channels.reconnect import Outage, backoff, longest
from aiosite.exceptions import one_line
from aiosite.services.redis import redis_client, unavailable_errors
from aiosite.settings import Settings

if TYPE_CHECKING:
    from redis.asyncio.connection import AbstractConnection

logger = logging.getLogger("aiosite.channels")

CLIENT_NAME = "aiosite.channels"
# The stream of hub channel "posts" is the key "aiosite:channels:posts"; its pub/sub
# channel is "aiosite:channels:<db>:posts", with the database number of the URL:
# pub/sub ignores database numbers, and two sites on one Redis with databases of their
# own must not hear each other.
PREFIX = "aiosite:channels:"
# A channel's stream is dropped this many milliseconds after its last message, so the
# streams of short-lived channels (one per user, per page) do not pile up.
STREAM_TTL_MS = 24 * 3600 * 1000
# Seconds between PINGs of an idle pub/sub connection when ``redis.health_check_interval``
# is 0: a subscriber never sends anything, so without them a server that vanished
# without closing the socket would never be noticed.
DEFAULT_PING_INTERVAL = 15.0

# The key holding the last message id the site's hubs gave (outside PREFIX, so that no
# channel's stream can be named like it).
LAST_ID_KEY = "aiosite:channel-ids"

# XADD and PUBLISH in one script, atomically: a message is in the stream if and only if
# it was published, and the id a subscriber receives live is the one replay starts from.
# Ids are "<ms>-<n>" like Redis's own, but given in order across every channel of the
# database (Redis's are per stream: two channels' messages of one millisecond would
# have the same id), so that one Last-Event-ID is one point in time on every channel a
# stream subscribes to, and a replay of several channels can be put in order.
# A user whose ACL forbids the pub/sub channel is refused before XADD (Redis 7; a script
# is not rolled back when a later call fails).
PUBLISH_SCRIPT = """
if redis.acl_check_cmd and not redis.acl_check_cmd('PUBLISH', ARGV[4], '') then
  return redis.error_reply('NOPERM this user may not publish on ' .. ARGV[4])
end
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local n = 0
local last = redis.call('GET', KEYS[2])
if last then
  local last_ms, last_n = string.match(last, '^(%d+)-(%d+)$')
  if last_ms and ms <= tonumber(last_ms) then
    ms = tonumber(last_ms)
    n = tonumber(last_n) + 1
  end
end
local id = string.format('%d-%d', ms, n)
redis.call('SET', KEYS[2], id)
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], id, 'm', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[4], id .. '\\n' .. ARGV[2])
return id
"""

STREAM_ID = re.compile(r"[0-9]{1,20}(?:-[0-9]{1,20})?")
# Each part of a stream id is an unsigned 64-bit number.
STREAM_ID_PART_MAX = 2**64 - 1


class RedisBackend:
    max_payload: int | None = None
    listens = True

    def __init__(self, receiver: Receiver, settings: Settings, config: ChannelsSettings) -> None:
        self._receiver = receiver
        self._deliver = receiver.deliver
        self._config = config
        self._history = config.history
        self.can_replay = config.history > 0
        self._client = redis_client(settings, url=config.url, client_name=CLIENT_NAME)
        db = self._client.connection_pool.connection_kwargs.get("db", 0)
        self._pubsub_prefix = f"{PREFIX}{db}:"
        self._script = self._client.register_script(PUBLISH_SCRIPT)
        self._unavailable = (*unavailable_errors(), _read_only_error())
        self._refused = _response_error()
        health = settings.redis.health_check_interval
        self._ping_interval = float(health) if health > 0 else DEFAULT_PING_INTERVAL
        self._reply_timeout = settings.redis.socket_timeout
        # Hub channels this process has subscribers for: what a reconnection subscribes.
        self._wanted: set[str] = set()
        # listen() calls waiting for Redis to confirm their SUBSCRIBE.
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        self._connection: AbstractConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._outage = Outage("Redis")
        self._delays = backoff(config.reconnect)
        # Channels a new connection subscribed to, until Redis confirms.
        self._restoring: int | None = None

    async def publish(self, channel: str, payload: bytes) -> str | None:
        pubsub_name = self._pubsub_prefix + channel
        try:
            async with asyncio.timeout(self._config.publish_timeout):
                if not self._history:
                    await self._client.publish(pubsub_name, b"\n" + payload)
                    return None
                message_id = await self._script(
                    keys=[PREFIX + channel, LAST_ID_KEY],
                    args=[self._history, payload, STREAM_TTL_MS, pubsub_name],
                )
        except TimeoutError:
            raise publish_timed_out(channel, self._config.publish_timeout) from None
        except self._unavailable as exc:
            raise ChannelUnavailable(
                f"Redis did not take a message on {channel!r}: {one_line(exc)}"
            ) from exc
        except self._refused as exc:
            # An ACL that forbids the channel or the command, a server out of memory.
            raise ChannelUnavailable(
                f"Redis refused a message on {channel!r}: {one_line(exc)}"
            ) from exc
        return _text(message_id)

    async def listen(self, channel: str) -> None:
        self._wanted.add(channel)
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_forever(), name="aiosite.channels")
        # While Redis is out of reach nobody waits: the reconnection subscribes.
        waiter = None
        if not self._outage.down:
            waiter = self._confirmed.get(channel)
            if waiter is None:
                waiter = self._confirmed[channel] = asyncio.get_running_loop().create_future()
        await self._send("SUBSCRIBE", channel)
        if waiter is not None:
            # Wait (a bounded while) until Redis confirms, so that a message published
            # once subscribe() has returned reaches the new subscriber.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._config.publish_timeout):
                    await asyncio.shield(waiter)

    async def unlisten(self, channel: str) -> None:
        self._wanted.discard(channel)
        await self._send("UNSUBSCRIBE", channel)

    async def replay(self, channel: str, after: str) -> list[tuple[str, bytes]]:
        if not self._history or not _stream_id(after):
            return []
        try:
            # The newest ``history`` messages after ``after``, newest first.
            kept = await self._client.xrevrange(
                PREFIX + channel, max="+", min="(" + after, count=self._history
            )
        except self._unavailable as exc:
            raise ChannelUnavailable(
                f"Redis did not give the messages of {channel!r}: {one_line(exc)}"
            ) from exc
        except self._refused as exc:
            # An id Redis refuses (the very last one, exclusive) or a command the ACL
            # forbids: nothing to replay, and the subscriber carries on live.
            logger.warning("No replay after %s on %r: %s", after, channel, one_line(exc))
            return []
        replayed: list[tuple[str, bytes]] = []
        for message_id, fields in reversed(kept or []):
            payload = (fields or {}).get(b"m")
            if message_id is not None and payload is not None:
                replayed.append((_text(message_id), _bytes(payload)))
        return replayed

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        self._release_waiters()
        await self._client.aclose()

    # --- the pub/sub connection -----------------------------------------------------

    async def _send(self, command: str, channel: str) -> None:
        connection = self._connection
        # A connection the reader is giving up is left alone: redis-py would silently
        # reconnect it on send, outside the reader's reconnection.
        if connection is None or not connection.is_connected:
            return
        # A failure is the reader's too: it subscribes again when it reconnects.
        with contextlib.suppress(*self._unavailable):
            await connection.send_command(
                command, self._pubsub_prefix + channel, check_health=False
            )

    async def _read_forever(self) -> None:
        from redis.exceptions import NoPermissionError

        self._delays = backoff(self._config.reconnect)
        while True:
            connection: AbstractConnection | None = None
            delay: float | None = None
            try:
                connection = self._new_connection()
                await connection.connect()  # type: ignore[no-untyped-call]
                self._connection = connection
                # Taken after ``_connection`` is set: a listen() from now on sends its
                # own SUBSCRIBE, one before is in ``_wanted``.
                wanted = sorted(self._wanted)
                if wanted:
                    # Back once Redis confirms (the first reply: it subscribes them all
                    # in one command), not before: a SUBSCRIBE it refuses is an outage.
                    self._restoring = len(wanted)
                    await connection.send_command(
                        "SUBSCRIBE", *[self._pubsub_prefix + c for c in wanted], check_health=False
                    )
                else:
                    self._restored(0)
                await self._read(connection)
            except NoPermissionError as exc:
                # A user whose ACL lacks a command or these channels: an error that
                # trying again soon will not mend, logged once.
                delay = longest(self._config.reconnect)
                self._outage.refused(exc, self._config.reconnect.max)
            except Exception as exc:
                # Whatever went wrong (an outage, a password Redis refused, a database
                # it does not have): logged once, tried again with backoff.
                self._outage.lost(exc)
            finally:
                self._connection = None
                self._restoring = None
                if connection is not None:
                    await connection.disconnect(nowait=True)
            # Nobody waits for a confirmation that cannot come before the reconnection.
            self._release_waiters()
            await asyncio.sleep(next(self._delays) if delay is None else delay)

    def _restored(self, listening: int) -> None:
        self._restoring = None
        self._delays = backoff(self._config.reconnect)
        if self._outage.restored(listening):
            # Listening again: what was published meanwhile is the subscribers' gap.
            self._receiver.reconnected()

    def _new_connection(self) -> AbstractConnection:
        # A connection of its own with the factory's address, credentials, name and
        # timeouts, outside the pool: it is held for as long as the process listens, and
        # it is reconnected here, not by redis-py behind the reader's back. Its reads
        # pass their own timeout (the factory's socket_timeout would end every idle
        # read): the reader PINGs after ``_ping_interval`` seconds of silence and gives
        # the server ``socket_timeout`` to answer, so a server that vanished without
        # closing the socket is noticed too. It speaks RESP2 (redis-py 8 defaults to
        # RESP3, whose pushes go through a handler that formats each one for a debug
        # log), so redis-py 8's maintenance notifications (RESP3 only) are left out.
        pool = self._client.connection_pool
        kwargs = {k: v for k, v in pool.connection_kwargs.items() if not k.startswith("maint_")}
        kwargs["protocol"] = 2
        connection: AbstractConnection = pool.connection_class(**kwargs)
        return connection

    async def _read(self, connection: AbstractConnection) -> None:
        from redis.exceptions import TimeoutError as RedisTimeoutError

        pinged = False
        while True:
            timeout = self._reply_timeout if pinged else self._ping_interval
            reply = await connection.read_response(timeout=timeout)
            if reply is None:  # nothing came in ``timeout`` seconds
                if pinged:
                    raise RedisTimeoutError(
                        f"Redis did not answer a PING in {self._reply_timeout:g} s"
                    )
                await connection.send_command("PING", check_health=False)
                pinged = True
                continue
            pinged = False  # anything at all shows the server is there
            self._handle(reply)

    def _handle(self, reply: Any) -> None:
        if not isinstance(reply, list) or len(reply) < 3:
            return
        kind, name = _text(reply[0]), _text(reply[1])
        prefix = self._pubsub_prefix
        if not name.startswith(prefix):
            return
        channel = name[len(prefix) :]
        if kind == "message":
            message_id, _, payload = _bytes(reply[2]).partition(b"\n")
            try:
                self._deliver(channel, message_id.decode() or None, payload)
            except Exception:
                logger.exception("Delivering a message on %r failed", channel)
        elif kind == "subscribe":
            if self._restoring is not None:
                self._restored(self._restoring)
            waiter = self._confirmed.pop(channel, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def _release_waiters(self) -> None:
        waiters, self._confirmed = self._confirmed, {}
        for waiter in waiters.values():
            if not waiter.done():
                waiter.set_result(None)


def _stream_id(value: str) -> bool:
    return STREAM_ID.fullmatch(value) is not None and all(
        int(part) <= STREAM_ID_PART_MAX for part in value.split("-")
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _response_error() -> type[Exception]:
    from redis.exceptions import ResponseError

    return ResponseError


def _read_only_error() -> type[Exception]:
    # A replica promoted away (failover): for a moment, the server refuses writes.
    from redis.exceptions import ReadOnlyError

    return ReadOnlyError
