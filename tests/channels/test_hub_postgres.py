"""The broadcast hub on PostgreSQL LISTEN/NOTIFY: two hubs exchange messages, NOTIFY's
payload limit, and PostgreSQL taken away: the listening connection terminated, the
server out of reach (a proxy cut). Each test has a database of its own, and terminates
only the connections of its hubs in it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest

from aiosite import ChannelUnavailable, Message, MessageTooLarge
from aiosite.channels import ChannelsSettings, Hub, postgres
from aiosite.channels.factory import make_hub
from aiosite.db.config import DatabaseSettings
from aiosite.exceptions import ImproperlyConfigured
from aiosite.settings import settings_class
from tests.channels.support import (
    SilentProxy,
    hub_records,
    own_database,
    receive,
    until_delivered,
)
from tests.db.proxy import TcpProxy

HubMaker = Callable[..., Hub]
SETTINGS = settings_class({"channels": ChannelsSettings, "database": DatabaseSettings})


@pytest.fixture
async def hubs(pg_url: str) -> AsyncIterator[HubMaker]:
    """``hubs(url=..., **channels)``: a hub on the test's database, closed after it."""
    made: list[Hub] = []

    def maker(url: str | None = pg_url, **channels: Any) -> Hub:
        settings = SETTINGS.model_construct(
            channels=ChannelsSettings(backend="postgres", url=url, **channels),
            database=DatabaseSettings(url="sqlite+aiosqlite:///unused.sqlite3"),
        )
        hub = make_hub(settings)
        made.append(hub)
        return hub

    yield maker
    for hub in made:
        await hub.close()


async def test_two_hubs_exchange_messages_through_postgresql(hubs: HubMaker) -> None:
    first, second = hubs(), hubs()
    async with (
        first.subscribe("room") as mine,
        second.subscribe("room") as theirs,
        second.subscribe("lobby") as elsewhere,
    ):
        assert await first.publish("room", {"text": "héllo", "n": 1}) is None
        expected = Message("room", {"text": "héllo", "n": 1}, None)
        received = await receive(theirs)
        assert received == expected
        assert received.payload == '{"text":"héllo","n":1}'.encode()
        assert await receive(mine) == expected  # once, through PostgreSQL
        # NUL and newlines in the data travel (escaped in its JSON); not in a name.
        await second.publish("room", {"text": "nul\x00 and\nnewline"})
        assert (await receive(theirs)).data == {"text": "nul\x00 and\nnewline"}
        assert (await receive(mine)).data == {"text": "nul\x00 and\nnewline"}
        for name in ("/ws/\x00", "odd\nname"):
            with pytest.raises(ValueError, match="without control characters"):
                await first.publish(name, "x")
            with pytest.raises(ValueError, match="without control characters"):
                second.subscribe(name)
        # A str that is not UTF-8 (a lone surrogate) is not JSON.
        with pytest.raises(TypeError):
            await first.publish("room", "\udcff")
        await second.publish("lobby", [1, 2, 3])
        assert (await receive(elsewhere)).data == [1, 2, 3]
        await asyncio.sleep(0.1)
        assert mine.pending() == theirs.pending() == elsewhere.pending() == 0
        # Nothing is kept: a last event id replays nothing.
        assert not second.backend.can_replay
        async with second.subscribe("room", last_event_id="1") as late:
            await asyncio.sleep(0.1)
            assert late.pending() == 0


async def test_the_sites_database_url_serves_when_channels_url_is_null(
    hubs: HubMaker, pg_url: str
) -> None:
    site_database = pg_url.replace("postgresql://", "postgresql+asyncpg://")
    settings = SETTINGS.model_construct(
        channels=ChannelsSettings(backend="postgres"),
        database=DatabaseSettings(url=site_database),
    )
    hub = make_hub(settings)
    try:
        async with hub.subscribe("room") as subscription:
            await hubs().publish("room", "through the site's database")
            assert (await receive(subscription)).data == "through the site's database"
    finally:
        await hub.close()


def test_a_database_that_is_not_postgresql_is_refused_at_once() -> None:
    settings = SETTINGS.model_construct(
        channels=ChannelsSettings(backend="postgres"),
        database=DatabaseSettings(url="sqlite+aiosqlite:///var/secret-name.sqlite3"),
    )
    with pytest.raises(ImproperlyConfigured, match="needs a PostgreSQL URL") as raised:
        make_hub(settings)
    assert "secret-name" not in str(raised.value)


async def test_a_message_over_notifys_limit_is_refused_with_a_clear_error(
    hubs: HubMaker,
) -> None:
    first, second = hubs(), hubs()
    channel = "salon-é"  # 8 bytes in UTF-8
    async with second.subscribe(channel) as subscription:
        # "<channel>\n<json>" is at most 7999 bytes; "é" is 2 bytes, the quotes 2.
        room = 7999 - len(channel.encode()) - 1 - 2
        largest = "é" * (room // 2) + "x" * (room % 2)
        await first.publish(channel, largest)
        assert (await receive(subscription)).data == largest

        with pytest.raises(MessageTooLarge) as raised:
            await first.publish(channel, largest + "x")
        message = str(raised.value)
        assert "PostgreSQL NOTIFY" in message
        assert "7999 bytes" in message
        assert "publish an id and let subscribers fetch the rest" in message
        # Over the limit whatever the channel: refused before the channel is looked at.
        with pytest.raises(MessageTooLarge, match="PostgreSQL NOTIFY"):
            await first.publish(channel, "x" * 8000)
        await asyncio.sleep(0.1)
        assert subscription.pending() == 0


async def test_the_hub_listens_again_after_its_connection_is_terminated(
    hubs: HubMaker, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiosite.channels")
    database = pg_url.rsplit("/", 1)[1]
    publisher, listener = hubs(), hubs()
    admin = await asyncpg.connect(pg_url)
    try:
        async with listener.subscribe("room") as subscription:
            await publisher.publish("room", "before")
            assert (await receive(subscription)).data == "before"
            assert subscription.gaps == 0
            terminated = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND application_name = 'aiosite.channels' "
                "AND query LIKE 'LISTEN %'",
                database,
            )
            assert terminated == 1

            assert "probe" in (await until_delivered(publisher, subscription, "room")).data
            assert subscription.gaps == 1
            await publisher.publish("room", "after")
            assert (await receive(subscription)).data == "after"
    finally:
        await admin.close()
    (warning,) = hub_records(caplog, logging.WARNING)
    assert "lost its PostgreSQL connection" in warning
    (info,) = hub_records(caplog, logging.INFO)
    assert "reconnected to PostgreSQL, listening again on 1 channel" in info
    assert all(r.exc_info is None for r in caplog.records)


async def test_a_publish_while_postgresql_is_out_of_reach_raises_then_the_hub_recovers(
    hubs: HubMaker, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiosite.channels")
    proxy = TcpProxy()
    await proxy.start()
    behind = hubs(pg_url.replace(":5432/", f":{proxy.port}/"), publish_timeout=3.0)
    direct = hubs()
    try:
        async with behind.subscribe("room") as subscription:
            await direct.publish("room", "before")
            assert (await receive(subscription)).data == "before"
            await behind.publish("room", "mine")  # the publishing pool is open too
            assert (await receive(subscription)).data == "mine"

            await proxy.stop()
            # At once: the pooled connection breaks under the NOTIFY.
            with pytest.raises(ChannelUnavailable, match="PostgreSQL did not take"):
                await behind.publish("room", "during")
            await asyncio.sleep(0.1)
            # Then: a new connection is refused.
            started = time.monotonic()
            with pytest.raises(ChannelUnavailable, match="PostgreSQL did not take") as raised:
                await behind.publish("room", "still down")
            assert time.monotonic() - started < 1.5  # refused, not timed out
            assert isinstance(raised.value.__cause__, ConnectionRefusedError)
            # Subscribing meanwhile neither fails nor waits.
            started = time.monotonic()
            async with behind.subscribe("later") as late_subscription:
                assert time.monotonic() - started < 1.5  # no wait for a confirmation
                await asyncio.sleep(0.5)  # a few reconnection attempts fail

                await proxy.start()
                assert "probe" in (await until_delivered(direct, subscription, "room")).data
                await behind.publish("later", "after")
                assert (await receive(late_subscription)).data == "after"
            (warning,) = hub_records(caplog, logging.WARNING)
            assert "lost its PostgreSQL connection" in warning
            (info,) = hub_records(caplog, logging.INFO)
            assert "listening again on 2 channel" in info
    finally:
        await behind.close()  # before its server goes
        await proxy.stop()


async def test_a_silent_postgresql_is_noticed_by_the_check_and_the_hub_recovers(
    hubs: HubMaker, pg_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A check of the idle listening connection every second rather than every 15.
    monkeypatch.setattr(postgres, "CHECK_INTERVAL", 1.0)
    proxy = SilentProxy(("127.0.0.1", 5432))
    await proxy.start()
    behind = hubs(pg_url.replace(":5432/", f":{proxy.port}/"), publish_timeout=0.5)
    direct = hubs()
    try:
        async with behind.subscribe("room") as subscription:
            await direct.publish("room", "before")
            assert (await receive(subscription)).data == "before"
            caplog.set_level(logging.INFO, logger="aiosite.channels")
            proxy.silent = True
            started = time.monotonic()
            while not hub_records(caplog, logging.WARNING):
                await asyncio.sleep(0.05)
                assert time.monotonic() - started < 4.0, "the silence went unnoticed"
            assert time.monotonic() - started >= 1.0
            (warning,) = hub_records(caplog, logging.WARNING)
            assert "PostgreSQL did not answer in 0.5 s" in warning

            proxy.silent = False
            assert "probe" in (await until_delivered(direct, subscription, "room")).data
            assert len(hub_records(caplog, logging.WARNING)) == 1
            assert len(hub_records(caplog, logging.INFO)) == 1
    finally:
        await behind.close()  # before its server goes
        await proxy.close()


async def test_a_message_the_databases_encoding_lacks_is_refused_with_a_clear_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    options = "ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
    async with own_database(options) as url:
        hub = make_hub(
            SETTINGS.model_construct(
                channels=ChannelsSettings(backend="postgres", url=url),
                database=DatabaseSettings(url="sqlite+aiosqlite:///unused.sqlite3"),
            )
        )
        try:
            async with hub.subscribe("room") as subscription:
                await hub.publish("room", "café")  # Latin-1 has it
                assert (await receive(subscription)).data == "café"
                with pytest.raises(
                    ChannelUnavailable, match="PostgreSQL refused a message"
                ) as raised:
                    await hub.publish("room", "10 €")
                assert isinstance(raised.value.__cause__, asyncpg.DataError)
                await hub.publish("room", "still works")
                assert (await receive(subscription)).data == "still works"
        finally:
            await hub.close()
    assert all(r.exc_info is None for r in caplog.records)


async def test_a_server_that_never_lets_the_hub_listen_holds_nobody_for_long(
    hubs: HubMaker, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiosite.channels")
    # The server answers the connection's start, then hears nothing more (its LISTEN).
    proxy = SilentProxy(("127.0.0.1", 5432), mute_after=1)
    await proxy.start()
    url = pg_url.replace(":5432/", f":{proxy.port}/") + "?sslmode=disable"
    behind = hubs(url, publish_timeout=0.5, reconnect={"initial": 5.0, "max": 5.0})
    try:
        started = time.monotonic()
        async with behind.subscribe("room"):
            assert time.monotonic() - started < 1.5
            while not hub_records(caplog, logging.WARNING):
                await asyncio.sleep(0.05)
                assert time.monotonic() - started < 3.0, "the wait went unnoticed"
        (warning,) = hub_records(caplog, logging.WARNING)
        assert "PostgreSQL did not let the hub listen within 0.5 s" in warning
    finally:
        await behind.close()
        await proxy.close()


async def test_a_publish_postgresql_does_not_answer_gives_up_after_publish_timeout(
    hubs: HubMaker, pg_url: str
) -> None:
    proxy = SilentProxy(("127.0.0.1", 5432))
    await proxy.start()
    behind = hubs(pg_url.replace(":5432/", f":{proxy.port}/"), publish_timeout=0.5)
    try:
        await behind.publish("room", "connected")
        proxy.silent = True
        started = time.monotonic()
        with pytest.raises(ChannelUnavailable, match=r"took over 0.5 s \(channels.publish"):
            await behind.publish("room", "lost?")
        assert 0.5 <= time.monotonic() - started < 1.5
    finally:
        await behind.close()
        await proxy.close()
