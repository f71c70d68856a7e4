"""The broadcast hub on its default backend (memory: one process): fan-out, bounded
queues and their two policies, the listener and get_nowait, replay (several channels,
messages that arrive both ways), channel names, the size limit, a closed hub; and two
websocket clients of one site talking through it."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from aiosite import ChannelUnavailable, Message, MessageTooLarge, SubscriberTooSlow, Subscription
from tests.channels.support import Calls, chat_project, memory_hub, receive
from tests.conftest import ProjectFactory, site_client


async def test_a_message_reaches_every_subscriber_of_its_channel_and_no_other() -> None:
    hub = memory_hub()
    async with (
        hub.subscribe("room") as first,
        hub.subscribe("room") as second,
        hub.subscribe("room", "lobby") as both,
        hub.subscribe("lobby") as elsewhere,
    ):
        assert hub.subscriber_count("room") == 3
        assert hub.subscriber_count() == 4
        message_id = await hub.publish("room", {"text": "hello", "n": [1, 2]})
        for subscription in (first, second, both):
            assert await receive(subscription) == Message(
                "room", {"text": "hello", "n": [1, 2]}, message_id
            )
        assert elsewhere.pending() == 0
        await hub.publish("lobby", "hi")
        assert (await receive(both)).channel == "lobby"
        assert (await receive(elsewhere)).data == "hi"
        assert first.pending() == second.pending() == 0
    assert hub.subscriber_count() == 0
    await hub.close()


async def test_a_message_carries_the_json_it_travelled_as() -> None:
    hub = memory_hub()
    async with hub.subscribe("room") as first, hub.subscribe("room") as second:
        await hub.publish("room", {"text": "héllo", "n": [1, 2]})
        message = await receive(first)
        assert message.payload == '{"text":"héllo","n":[1,2]}'.encode()
        assert json.loads(message.payload) == message.data
        # Decoded once for every subscriber of the process.
        assert (await receive(second)).data is message.data
        # Compared and shown by channel, data and id alone.
        assert message == Message("room", message.data, message.id)
        assert "payload" not in repr(message)
    await hub.close()


def drain(subscription: Subscription) -> list[Any]:
    taken = []
    while (message := subscription.get_nowait()) is not None:
        taken.append(message.data)
    return taken


async def test_a_listener_hears_of_what_to_look_at_and_get_nowait_takes_it() -> None:
    hub = memory_hub(queue_size=2)
    calls = Calls()
    async with hub.subscribe("feed") as subscription:
        subscription.set_listener(calls)
        assert calls.count == 0  # nothing to look at yet
        assert subscription.get_nowait() is None
        await hub.publish("feed", 1)
        assert calls.count == 1
        await hub.publish("feed", 2)
        await hub.publish("feed", 3)  # drops 1
        assert calls.count == 1  # the queue was not empty: no news
        assert drain(subscription) == [2, 3]
        assert subscription.dropped == 1
        await hub.publish("feed", 4)
        assert calls.count == 2
        # One set while messages wait is called at once; None removes it.
        later = Calls()
        subscription.set_listener(later)
        assert later.count == 1
        subscription.set_listener(None)
        await hub.publish("feed", 5)
        assert (later.count, calls.count) == (1, 2)
        assert drain(subscription) == [4, 5]
        subscription.set_listener(calls)
        assert calls.count == 2
    assert calls.count == 3  # the end
    assert subscription.closed
    assert subscription.get_nowait() is None

    async with hub.subscribe("feed", queue_size=1, when_full="disconnect") as slow:
        slow.set_listener(calls := Calls())
        await hub.publish("feed", 1)
        await hub.publish("feed", 2)
        assert calls.count == 2  # a message, then the overflow
        with pytest.raises(SubscriberTooSlow, match="fell 1 messages behind"):
            slow.get_nowait()
        await hub.publish("feed", 3)
        assert calls.count == 2
        with pytest.raises(SubscriberTooSlow):
            await receive(slow)
    await hub.close()


async def test_a_failing_listener_troubles_neither_the_publisher_nor_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = memory_hub()

    def broken() -> None:
        raise RuntimeError("a bug in a sender")

    async with hub.subscribe("room") as failing, hub.subscribe("room") as other:
        failing.set_listener(broken)
        assert await hub.publish("room", "hello") is not None
        assert (await receive(other)).data == "hello"
        assert (await receive(failing)).data == "hello"
    # Called for the message, then for the end: each failure logged with its traceback.
    records = [r for r in caplog.records if r.name == "aiosite.channels"]
    assert len(records) == 2
    assert all("listener failed" in r.getMessage() and r.exc_info for r in records)
    await hub.close()


async def test_a_full_queue_drops_the_oldest_message_and_counts_it() -> None:
    hub = memory_hub(queue_size=3)
    async with hub.subscribe("feed") as subscription:
        for n in range(10):
            await hub.publish("feed", n)
        assert subscription.dropped == 7
        assert [(await receive(subscription)).data for _ in range(3)] == [7, 8, 9]
        await hub.publish("feed", 10)
        assert (await receive(subscription)).data == 10
        assert subscription.dropped == 7
    await hub.close()


async def test_a_full_queue_under_disconnect_ends_the_subscription_alone() -> None:
    hub = memory_hub(when_full="disconnect")
    async with (
        hub.subscribe("feed", queue_size=2) as slow,
        hub.subscribe("feed", queue_size=2, when_full="drop_oldest") as dropping,
    ):
        for n in range(3):
            await hub.publish("feed", n)
        with pytest.raises(SubscriberTooSlow, match="fell 2 messages behind"):
            await receive(slow)
        # The other subscriber follows its own policy and carries on.
        assert dropping.dropped == 1
        assert [(await receive(dropping)).data for _ in range(2)] == [1, 2]
        await hub.publish("feed", 3)
        assert (await receive(dropping)).data == 3
    await hub.close()


async def test_a_subscriber_that_never_reads_stalls_neither_publisher_nor_others() -> None:
    hub = memory_hub(queue_size=8)
    count = 2000
    async with hub.subscribe("feed") as slow, hub.subscribe("feed") as fast:

        async def read_all() -> list[int]:
            return [(await receive(fast)).data for _ in range(count)]

        reader = asyncio.create_task(read_all())
        started = time.monotonic()
        for n in range(count):
            await hub.publish("feed", n)
            await asyncio.sleep(0)  # the fast reader's turn
        published_in = time.monotonic() - started
        assert await reader == list(range(count))
        assert fast.dropped == 0
        assert published_in < 2.0  # never waited for the slow one
        assert slow.dropped == count - 8
        assert slow.pending() == 8
        assert [(await receive(slow)).data for _ in range(8)] == list(range(count - 8, count))
    await hub.close()


async def test_a_subscriber_gets_the_kept_messages_after_its_last_event_id() -> None:
    hub = memory_hub(history=3)
    ids = [await hub.publish("news", {"n": n}) for n in range(5)]
    assert len(set(ids)) == 5
    async with hub.subscribe("news", last_event_id=ids[2]) as subscription:
        assert [await receive(subscription) for _ in range(2)] == [
            Message("news", {"n": 3}, ids[3]),
            Message("news", {"n": 4}, ids[4]),
        ]
        live = await hub.publish("news", {"n": 5})
        assert await receive(subscription) == Message("news", {"n": 5}, live)
    # Only ``history`` messages are kept: an older id gets those three.
    async with hub.subscribe("news", last_event_id=ids[0]) as subscription:
        assert [(await receive(subscription)).data["n"] for _ in range(3)] == [3, 4, 5]
        assert subscription.pending() == 0
    async with hub.subscribe("news", last_event_id="not an id") as subscription:
        assert subscription.pending() == 0
    await hub.close()


async def test_a_replay_of_several_channels_gives_them_in_publishing_order() -> None:
    hub = memory_hub(history=10)
    after = await hub.publish("a", "a1")
    for channel, data in (("a", "a2"), ("b", "b1"), ("a", "a3")):
        await hub.publish(channel, data)
    async with hub.subscribe("a", "b", "a", last_event_id=after) as subscription:
        assert subscription.channels == ("a", "b")
        assert [(await receive(subscription)).data for _ in range(3)] == ["a2", "b1", "a3"]
        assert subscription.pending() == 0
        await hub.publish("b", "b2")
        await hub.publish("a", "a4")
        assert [(await receive(subscription)).data for _ in range(2)] == ["b2", "a4"]
    await hub.close()


async def test_messages_published_while_a_subscriber_replays_arrive_once_in_order() -> None:
    hub = memory_hub(history=1000)
    count = 300
    ids: list[str | None] = []
    under_way = asyncio.Event()

    async def publish_all() -> None:
        for n in range(count):
            ids.append(await hub.publish("ab"[n % 2], n))
            if n == 20:
                under_way.set()
            await asyncio.sleep(0)  # the subscriber's turn

    publisher = asyncio.create_task(publish_all())
    await under_way.wait()
    # Messages published while it subscribes reach it live and are kept: given once.
    async with hub.subscribe("a", "b", last_event_id=ids[9], queue_size=count) as both:
        received = [(await receive(both)).data for _ in range(count - 10)]
    await publisher
    assert received == list(range(10, count))
    assert both.pending() == 0
    await hub.close()


async def test_without_history_the_memory_backend_gives_no_ids_and_replays_nothing() -> None:
    hub = memory_hub(history=0)
    assert not hub.backend.can_replay
    async with hub.subscribe("news") as subscription:
        assert await hub.publish("news", 1) is None
        assert await receive(subscription) == Message("news", 1, None)
    async with hub.subscribe("news", last_event_id="0") as late:
        assert late.pending() == 0
    await hub.close()


@pytest.mark.parametrize(
    "name",
    ["nul\x00", "line\nbreak", "tab\t", "del\x7f", "c1\x85", "x" * 201, "é" * 101, "\ud800"],
)
async def test_a_channel_name_no_backend_carries_cleanly_is_refused(name: str) -> None:
    hub = memory_hub()
    with pytest.raises(ValueError, match="at most 200 bytes"):
        await hub.publish(name, 1)
    with pytest.raises(ValueError, match="without control characters"):
        hub.subscribe("fine", name)
    assert hub.subscriber_count() == 0
    # The longest names there are.
    async with hub.subscribe("é" * 100, "x" * 200) as subscription:
        await hub.publish("é" * 100, 1)
        await hub.publish("x" * 200, 2)
        assert [(await receive(subscription)).data for _ in range(2)] == [1, 2]
    await hub.close()


async def test_subscribe_and_publish_refuse_what_they_cannot_honour() -> None:
    hub = memory_hub()
    for size in (0, -1):
        with pytest.raises(ValueError, match="queue_size must be 1 or more"):
            hub.subscribe("room", queue_size=size)
    with pytest.raises(ValueError, match="when_full must be"):
        hub.subscribe("room", when_full="wait")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one channel"):
        hub.subscribe()
    async with hub.subscribe("room") as subscription:
        for data in ("\ud800", b"bytes", {1, 2}):
            with pytest.raises(TypeError):
                await hub.publish("room", data)
        assert subscription.pending() == 0
    await hub.close()


async def test_a_message_over_the_limit_is_refused_and_reaches_nobody() -> None:
    hub = memory_hub(max_message_bytes=64)
    async with hub.subscribe("room") as subscription:
        with pytest.raises(MessageTooLarge) as raised:
            await hub.publish("room", "x" * 100)
        assert isinstance(raised.value, ValueError)
        assert "102 bytes on 'room'" in str(raised.value)
        assert "64 bytes" in str(raised.value)
        assert "channels.max_message_bytes" in str(raised.value)
        await hub.publish("room", "x" * 62)  # 64 bytes with its quotes
        assert (await receive(subscription)).data == "x" * 62
        assert subscription.pending() == 0
    await hub.close()


async def test_a_closed_hub_ends_its_subscriptions_and_refuses_to_publish() -> None:
    hub = memory_hub()
    async with hub.subscribe("room") as subscription, hub.subscribe("room") as listened:
        listened.set_listener(calls := Calls())

        async def read_until_the_end() -> list[Any]:
            return [message.data async for message in subscription]

        reader = asyncio.create_task(read_until_the_end())
        await hub.publish("room", 1)
        await asyncio.sleep(0.01)
        assert calls.count == 1
        await hub.close()
        assert calls.count == 2
        assert listened.closed
        async with asyncio.timeout(2):
            assert await reader == [1]
    with pytest.raises(ChannelUnavailable, match="closed"):
        await hub.publish("room", 2)
    with pytest.raises(ChannelUnavailable, match="closed"):
        async with hub.subscribe("room"):
            pass


async def test_two_websocket_clients_of_one_site_talk_through_its_hub(
    make_project: ProjectFactory,
) -> None:
    async with site_client(chat_project(make_project)) as client:
        first = await client.ws_connect("/live/chat/room")
        second = await client.ws_connect("/live/chat/room")
        elsewhere = await client.ws_connect("/live/chat/other")
        for ws in (first, second, elsewhere):
            assert await ws.receive_json(timeout=5) == {"ready": True}
        await first.send_json({"text": "hello"})
        for ws in (first, second):
            assert (await ws.receive_json(timeout=5))["data"] == {"text": "hello"}
        response = await client.post("/live/publish/room", json={"text": "from HTTP"})
        assert response.status == 200
        message_id = (await response.json())["id"]
        for ws in (first, second):
            assert await ws.receive_json(timeout=5) == {
                "data": {"text": "from HTTP"},
                "id": message_id,
            }
        await elsewhere.send_json({"text": "only here"})
        assert (await elsewhere.receive_json(timeout=5))["data"] == {"text": "only here"}
        for ws in (first, second, elsewhere):
            await ws.close()
