"""The broadcast hub on Redis: two hubs (as two processes have) exchange messages, replay
from the capped stream, and Redis taken away: its connections killed, the server out of
reach (a proxy cut), the server silent. The tests use a Redis database of their own,
delete only their own keys and kill only the connections their hubs opened."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
import redis.exceptions

from aiosite import ChannelUnavailable, Message
from aiosite.channels import ChannelsSettings, Hub
from aiosite.channels.factory import make_hub
from aiosite.settings import RedisSettings, settings_class
from tests.channels.support import (
    REDIS_DB,
    SilentProxy,
    chat_project,
    eventually_true,
    hub_records,
    receive,
    until_delivered,
)
from tests.conftest import REDIS_ADDRESS, ProjectFactory, require_service, site_client
from tests.db.proxy import TcpProxy

HOST, PORT = REDIS_ADDRESS
URL = f"redis://{HOST}:{PORT}/{REDIS_DB}"
STREAM_ID = re.compile(r"^\d+-\d+$")

HubMaker = Callable[..., Hub]


@pytest.fixture
async def channel() -> AsyncIterator[str]:
    require_service("Redis", *REDIS_ADDRESS)
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    async with admin() as client:
        keys = [key async for key in client.scan_iter(match=f"aiosite:channels:{name}*")]
        if keys:
            await client.delete(*keys)


@pytest.fixture
async def hubs() -> AsyncIterator[HubMaker]:
    """``hubs(url=..., redis={...}, **channels)``: a hub on Redis, as a site's settings
    make it; closed after the test."""
    made: list[Hub] = []

    def maker(url: str = URL, redis: dict[str, Any] | None = None, **channels: Any) -> Hub:
        settings = settings_class({"channels": ChannelsSettings}).model_construct(
            redis=RedisSettings(url=url, **(redis or {})),
            channels=ChannelsSettings(backend="redis", **channels),
        )
        hub = make_hub(settings)
        made.append(hub)
        return hub

    yield maker
    for hub in made:
        await hub.close()


@contextlib.asynccontextmanager
async def admin() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis(host=HOST, port=PORT, db=REDIS_DB)
    try:
        yield client
    finally:
        await client.aclose()


async def hub_connections(client: aioredis.Redis) -> set[int]:
    """Ids of the hubs' connections (by their client name) on the tests' database."""
    return {
        int(entry["id"])
        for entry in await client.client_list()
        if entry["name"] == "aiosite.channels" and int(entry["db"]) == REDIS_DB
    }


async def listeners(client: aioredis.Redis, channel: str) -> int:
    """Processes subscribed to hub channel ``channel`` of the tests' database."""
    name = f"aiosite:channels:{REDIS_DB}:{channel}"
    ((_, count),) = await client.pubsub_numsub(name)
    return int(count)


async def test_two_hubs_exchange_messages_through_redis(hubs: HubMaker, channel: str) -> None:
    first, second = hubs(), hubs()
    other = channel + "-other"
    async with (
        first.subscribe(channel) as mine,
        second.subscribe(channel) as theirs,
        second.subscribe(other) as elsewhere,
    ):
        message_id = await first.publish(channel, {"text": "héllo", "n": 1})
        assert message_id is not None
        assert STREAM_ID.match(message_id)
        expected = Message(channel, {"text": "héllo", "n": 1}, message_id)
        received = await receive(theirs)
        assert received == expected
        assert received.payload == '{"text":"héllo","n":1}'.encode()
        # The publisher's own subscribers get it through Redis too, once.
        assert await receive(mine) == expected
        await second.publish(other, [1, 2, 3])
        assert (await receive(elsewhere)).data == [1, 2, 3]
        await asyncio.sleep(0.1)
        assert mine.pending() == theirs.pending() == elsewhere.pending() == 0
    async with admin() as client:
        assert await client.exists(f"aiosite:channels:{channel}") == 1
        assert 0 < await client.pttl(f"aiosite:channels:{channel}") <= 24 * 3600 * 1000


async def test_hubs_on_other_redis_databases_do_not_hear_each_other(
    hubs: HubMaker, channel: str
) -> None:
    ours = hubs()
    async with ours.subscribe(channel) as subscription, admin() as client:
        # Redis pub/sub ignores database numbers: the hub names its channels with its
        # own, so what a hub on database 12 of this Redis publishes reaches nobody here.
        neighbours = f"aiosite:channels:{REDIS_DB + 1}:{channel}"
        assert await client.publish(neighbours, b'\n"next door"') == 0
        assert await listeners(client, channel) == 1
        await ours.publish(channel, "here")
        assert (await receive(subscription)).data == "here"
        await asyncio.sleep(0.1)
        assert subscription.pending() == 0


async def test_a_subscriber_replays_the_stream_after_its_last_event_id(
    hubs: HubMaker, channel: str
) -> None:
    first, second = hubs(history=3), hubs(history=3)
    ids = [await first.publish(channel, {"n": n}) for n in range(10)]
    positions = [tuple(map(int, str(i).split("-"))) for i in ids]
    assert positions == sorted(set(positions))  # stream ids, increasing
    async with second.subscribe(channel, last_event_id=ids[7]) as subscription:
        assert [await receive(subscription) for _ in range(2)] == [
            Message(channel, {"n": 8}, ids[8]),
            Message(channel, {"n": 9}, ids[9]),
        ]
        live = await first.publish(channel, {"n": 10})
        assert await receive(subscription) == Message(channel, {"n": 10}, live)
    # An older id than the stream keeps: the newest ``history`` messages after it.
    async with second.subscribe(channel, last_event_id=ids[0]) as subscription:
        assert [(await receive(subscription)).data["n"] for _ in range(3)] == [8, 9, 10]
    for unknown in ("not-an-id", "1-2-3", "", "5\n", "٣"):
        async with second.subscribe(channel, last_event_id=unknown) as subscription:
            await first.publish(channel, {"n": "live"})
            assert (await receive(subscription)).data == {"n": "live"}


async def test_an_id_redis_would_refuse_replays_nothing_and_leaves_nothing_behind(
    hubs: HubMaker, channel: str, caplog: pytest.LogCaptureFixture
) -> None:
    hub = hubs()
    await hub.publish(channel, "kept")
    for refused in (
        "99999999999999999999",  # over 2**64 - 1
        "1-18446744073709551616",
        "18446744073709551615-18446744073709551615",  # the last id there is, exclusive
    ):
        async with hub.subscribe(channel, last_event_id=refused) as subscription:
            await hub.publish(channel, {"n": "live"})
            assert (await receive(subscription)).data == {"n": "live"}
            assert subscription.pending() == 0
        assert hub.subscriber_count() == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert all(r.exc_info is None for r in caplog.records)


async def test_a_replay_of_several_channels_gives_each_message_once(
    hubs: HubMaker, channel: str
) -> None:
    publisher, listener = hubs(history=1000), hubs(history=1000)
    a, b = channel + "-a", channel + "-b"
    after = await publisher.publish(a, "a1")
    for name, data in ((a, "a2"), (b, "b1"), (a, "a3")):
        await publisher.publish(name, data)
    async with listener.subscribe(a, b, last_event_id=after) as subscription:
        # In the order they were published, whichever channel (ids are given in
        # order across channels, even within one millisecond).
        assert [(await receive(subscription)).data for _ in range(3)] == ["a2", "b1", "a3"]
        await asyncio.sleep(0.1)
        assert subscription.pending() == 0

    # Published while the subscriber subscribes and replays: live and kept, given once.
    count = 200
    ids: list[str | None] = []
    under_way = asyncio.Event()

    async def publish_all() -> None:
        for n in range(count):
            ids.append(await publisher.publish((a, b)[n % 2], n))
            if n == 20:
                under_way.set()

    task = asyncio.create_task(publish_all())
    await under_way.wait()
    # The last id a client saw, on b: the same point in time on a.
    async with listener.subscribe(a, b, last_event_id=ids[9], queue_size=count) as both:
        received = [(await receive(both)).data for _ in range(count - 10)]
        await task
        await asyncio.sleep(0.1)
        assert both.pending() == 0
    assert received == list(range(10, count))


async def test_a_second_subscriber_waits_for_the_listen_the_first_one_started(
    hubs: HubMaker, channel: str
) -> None:
    publisher, listener = hubs(), hubs()
    await publisher.publish(channel + "-warm", 0)  # the publisher is connected
    first, second = listener.subscribe(channel), listener.subscribe(channel)
    entering = asyncio.create_task(first.__aenter__())
    await asyncio.sleep(0)  # the first starts listening: the hub is connecting
    async with second:
        await publisher.publish(channel, "at once")
        assert (await receive(second)).data == "at once"
        await entering
        try:
            assert (await receive(first)).data == "at once"
        finally:
            await first.__aexit__(None, None, None)


async def test_a_subscriber_cancelled_while_it_subscribes_or_leaves_leaves_nothing_behind(
    hubs: HubMaker, channel: str
) -> None:
    listener, publisher = hubs(), hubs()
    names = [f"{channel}-{n}" for n in range(3)]

    async def subscriber() -> None:
        async with listener.subscribe(*names):
            await asyncio.sleep(10)

    entering = asyncio.create_task(subscriber())
    await asyncio.sleep(0)  # waiting for Redis to confirm
    entering.cancel()
    with pytest.raises(asyncio.CancelledError):
        await entering
    assert listener.subscriber_count() == 0

    subscription = listener.subscribe(*names)
    await subscription.__aenter__()
    async with admin() as client:
        assert [await listeners(client, name) for name in names] == [1, 1, 1]
        leaving = asyncio.create_task(subscription.__aexit__(None, None, None))
        await asyncio.sleep(0)  # it has started to unsubscribe
        leaving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await leaving
        assert listener.subscriber_count() == 0

        async def unsubscribed() -> bool:
            return [await listeners(client, name) for name in names] == [0, 0, 0]

        await eventually_true(unsubscribed)
    # The process's pub/sub connection still serves.
    async with listener.subscribe(names[0]) as again:
        await publisher.publish(names[0], "still here")
        assert (await receive(again)).data == "still here"


async def test_without_history_a_publish_keeps_nothing(hubs: HubMaker, channel: str) -> None:
    first, second = hubs(history=0), hubs(history=0)
    assert not second.backend.can_replay
    async with second.subscribe(channel, last_event_id="0-0") as subscription:
        assert await first.publish(channel, {"n": 1}) is None
        assert await receive(subscription) == Message(channel, {"n": 1}, None)
    async with admin() as client:
        assert await client.exists(f"aiosite:channels:{channel}") == 0


async def test_a_slow_subscriber_stalls_nobody(hubs: HubMaker, channel: str) -> None:
    publisher, listener = hubs(), hubs()
    count = 300
    async with (
        listener.subscribe(channel, queue_size=4) as slow,
        listener.subscribe(channel, queue_size=count) as fast,
    ):
        started = time.monotonic()
        for n in range(count):
            await publisher.publish(channel, n)
        assert time.monotonic() - started < 5.0
        assert [(await receive(fast)).data for _ in range(count)] == list(range(count))
        assert slow.dropped == count - 4
        assert [(await receive(slow)).data for _ in range(4)] == list(range(count - 4, count))


async def test_the_hub_listens_again_after_redis_kills_its_connections(
    hubs: HubMaker, channel: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiosite.channels")
    async with admin() as client:
        others = await hub_connections(client)
        publisher, listener = hubs(), hubs()
        other = channel + "-other"
        async with (
            listener.subscribe(channel) as subscription,
            listener.subscribe(channel, other) as both,
        ):
            seen: list[int] = []
            subscription.set_listener(lambda: seen.append(subscription.gaps))
            await publisher.publish(channel, "before")
            assert (await receive(subscription)).data == "before"
            assert (await receive(both)).data == "before"
            assert subscription.gaps == both.gaps == 0
            ours = await hub_connections(client) - others
            assert len(ours) >= 2  # the listener's pub/sub one, the publisher's pooled one
            for connection_id in ours:
                assert await client.client_kill_filter(_id=str(connection_id)) == 1

            message = await until_delivered(publisher, subscription, channel)
            assert "probe" in message.data
            # Told of the gap once it listens again, before the first message after it.
            assert seen[:2] == [0, 1]
            assert subscription.gaps == both.gaps == 1  # once, on two channels too
            await publisher.publish(channel, "after")
            assert (await receive(subscription)).data == "after"
            assert not (await hub_connections(client) - others) & ours
    (warning,) = hub_records(caplog, logging.WARNING)
    assert "lost its Redis connection" in warning
    assert "ConnectionError" in warning
    (info,) = hub_records(caplog, logging.INFO)
    assert "reconnected to Redis, listening again on 2 channel" in info
    assert all(r.exc_info is None for r in caplog.records)


async def test_a_publish_while_redis_is_out_of_reach_raises_then_the_hub_recovers(
    hubs: HubMaker, channel: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiosite.channels")
    proxy = TcpProxy(REDIS_ADDRESS)
    await proxy.start()
    timeouts = {"socket_timeout": 0.5, "connect_timeout": 0.5}
    behind = hubs(f"redis://127.0.0.1:{proxy.port}/{REDIS_DB}", timeouts, publish_timeout=3.0)
    direct = hubs()
    later = channel + "-later"
    async with behind.subscribe(channel) as subscription:
        await direct.publish(channel, "before")
        assert (await receive(subscription)).data == "before"

        await proxy.stop()
        started = time.monotonic()
        with pytest.raises(ChannelUnavailable, match="Redis did not take a message") as raised:
            await behind.publish(channel, "during")
        assert time.monotonic() - started < 1.5  # refused, not timed out
        assert isinstance(raised.value.__cause__, redis.exceptions.ConnectionError)
        # Subscribing meanwhile neither fails nor waits: the reconnection subscribes.
        started = time.monotonic()
        async with behind.subscribe(later) as late_subscription:
            assert time.monotonic() - started < 1.5  # no wait for a confirmation
            await asyncio.sleep(0.5)  # a few reconnection attempts fail

            await proxy.start()
            assert "probe" in (await until_delivered(direct, subscription, channel)).data
            assert "probe" in (await until_delivered(direct, late_subscription, later)).data
            await behind.publish(later, "after")
            assert (await receive(late_subscription)).data == "after"
            # Subscribed during the outage: it may have missed messages too.
            assert subscription.gaps == late_subscription.gaps == 1
    await proxy.stop()
    (warning,) = hub_records(caplog, logging.WARNING)
    assert "lost its Redis connection" in warning
    (info,) = hub_records(caplog, logging.INFO)
    assert "listening again on 2 channel" in info


async def test_a_silent_redis_is_noticed_by_the_ping_and_the_hub_recovers(
    hubs: HubMaker, channel: str, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = SilentProxy()
    await proxy.start()
    bounds = {"health_check_interval": 1, "socket_timeout": 0.5, "connect_timeout": 0.5}
    behind = hubs(f"redis://127.0.0.1:{proxy.port}/{REDIS_DB}", bounds)
    direct = hubs()
    try:
        async with behind.subscribe(channel) as subscription:
            await direct.publish(channel, "before")
            assert (await receive(subscription)).data == "before"
            caplog.set_level(logging.INFO, logger="aiosite.channels")
            proxy.silent = True
            started = time.monotonic()
            while not hub_records(caplog, logging.WARNING):
                await asyncio.sleep(0.05)
                assert time.monotonic() - started < 4.0, "the silence went unnoticed"
            # One PING after a second of silence, unanswered for half a second.
            assert time.monotonic() - started >= 1.0
            (warning,) = hub_records(caplog, logging.WARNING)
            assert "did not answer a PING in 0.5 s" in warning

            proxy.silent = False
            assert "probe" in (await until_delivered(direct, subscription, channel)).data
            assert len(hub_records(caplog, logging.WARNING)) == 1
            assert len(hub_records(caplog, logging.INFO)) == 1
    finally:
        await behind.close()  # before its Redis goes
        await proxy.close()


async def test_a_publish_redis_does_not_answer_gives_up_after_publish_timeout(
    hubs: HubMaker, channel: str
) -> None:
    proxy = SilentProxy()
    await proxy.start()
    bounds = {"socket_timeout": 10, "connect_timeout": 10}
    behind = hubs(f"redis://127.0.0.1:{proxy.port}/{REDIS_DB}", bounds, publish_timeout=0.5)
    try:
        await behind.publish(channel, "connected")
        proxy.silent = True
        started = time.monotonic()
        with pytest.raises(ChannelUnavailable, match=r"took over 0.5 s \(channels.publish"):
            await behind.publish(channel, "lost?")
        assert 0.5 <= time.monotonic() - started < 1.5
    finally:
        await behind.close()  # before its Redis goes
        await proxy.close()


async def test_a_user_refused_the_channels_is_logged_once_and_retried_slowly(
    hubs: HubMaker, channel: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiosite.channels")
    user = f"aiosite-test-{uuid.uuid4().hex[:12]}"
    async with admin() as client:
        # Every command and key, no pub/sub channel.
        await client.acl_setuser(
            user, enabled=True, passwords=["+secret"], keys=["*"], commands=["+@all"]
        )
        try:
            hub = hubs(f"redis://{user}:secret@{HOST}:{PORT}/{REDIS_DB}", reconnect={"max": 2.0})
            started = time.monotonic()
            async with hub.subscribe(channel) as subscription:
                # Refused at once: the subscriber does not wait for a confirmation.
                assert time.monotonic() - started < 1.0
                with pytest.raises(ChannelUnavailable, match="Redis refused a message"):
                    await hub.publish(channel, "forbidden")
                # Refused whole: not kept for replay either.
                assert await client.exists(f"aiosite:channels:{channel}") == 0
                await asyncio.sleep(2.5)
                assert subscription.pending() == subscription.gaps == 0
            await hub.close()
            refusals = sum(
                int(str(entry["count"]))
                for entry in await client.acl_log()
                if entry["username"] == user and entry["reason"] == "channel"
            )
            # The first attempt and one or two more, at the longest backoff.
            assert 1 <= refusals <= 3 + 1  # + the refused publish
        finally:
            await client.acl_deluser(user)
    (error,) = hub_records(caplog, logging.ERROR)
    assert "Redis refuses the broadcast hub's listening connection" in error
    assert "NoPermissionError" in error
    assert "every 2 s" in error
    assert hub_records(caplog, logging.WARNING) == hub_records(caplog, logging.INFO) == []
    assert all(r.exc_info is None for r in caplog.records)


async def test_a_route_that_publishes_while_redis_is_down_answers_503(
    make_project: ProjectFactory, unused_tcp_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    test_yaml = (
        f"redis:\n  connect_timeout: 0.5\n"
        f"channels:\n  backend: redis\n  url: redis://127.0.0.1:{unused_tcp_port}/0\n"
    )
    async with site_client(chat_project(make_project, test_yaml)) as client:
        started = time.monotonic()
        response = await client.post("/live/publish/room", json={"text": "lost?"})
        assert time.monotonic() - started < 2.0
        assert response.status == 503
        assert response.headers["Retry-After"] == "5"
        assert "Live updates are unavailable" in await response.text()
    warnings = [r for r in caplog.records if r.name.startswith("aiosite.channels")]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    logged = warnings[0].getMessage()
    assert "POST /live/publish/room" in logged
    assert "answered 503" in logged
    assert "ConnectionError" in logged
    assert warnings[0].exc_info is None
