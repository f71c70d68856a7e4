"""Server-sent events through the site's request core, over real sockets: a stream fed
from the hub, keep-alive comments, ``Last-Event-ID`` replay, the connection limit, a
client that leaves, a handler's own events, a failure mid-stream and the site stopping."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from aiosite import Hub, broadcast, live_connections, load_site
from aiosite.channels import ChannelsSettings
from aiosite.channels.factory import make_hub
from aiosite.channels.live import SHUTDOWN_GRACE
from aiosite.settings import RedisSettings, settings_class
from tests.channels.support import REDIS_DB
from tests.channels.test_websockets import (  # noqa: F401 (fixtures)
    SiteServer,
    channel_name,
    eventually,
    live_client,
    redis_hub_yaml,
    redis_proxy,
)
from tests.conftest import REDIS_ADDRESS, ProjectFactory
from tests.db.proxy import TcpProxy

EVENTS_INIT = 'from aiosite import App\n\napp = App("events", prefix="")\n'
EVENTS_ROUTES = """\
from aiohttp import web

from aiosite import Routes, open_event_stream, stream_channel

routes = Routes()


@routes.get("/events", name="events")
async def events(request: web.Request) -> web.StreamResponse:
    return await stream_channel(request, "posts")


@routes.get("/events-on/{channel}", name="events_on")
async def events_on(request: web.Request) -> web.StreamResponse:
    return await stream_channel(request, request.match_info["channel"])


@routes.get("/titles", name="titles")
async def titles(request: web.Request) -> web.StreamResponse:
    return await stream_channel(
        request,
        "posts",
        "pages",
        event="title",
        last_event_id=False,
        transform=lambda message: message.data.get("title"),
    )


@routes.get("/ticks", name="ticks")
async def ticks(request: web.Request) -> web.StreamResponse:
    async with open_event_stream(request) as stream:
        for n in range(3):
            await stream.send(f"tick {n}", id=f"t{n}", event="tick")
    return stream


@routes.get("/breaks", name="breaks")
async def breaks(request: web.Request) -> web.StreamResponse:
    async with open_event_stream(request) as stream:
        await stream.send("first")
        raise RuntimeError("broken mid-stream")
    return stream
"""


def events_project(make_project: ProjectFactory, test_yaml: str = "{}\n") -> Path:
    return make_project(
        {"PKG/events/__init__.py": EVENTS_INIT, "PKG/events/routes.py": EVENTS_ROUTES},
        apps=["events"],
        env_yaml={"test": test_yaml},
        with_home=False,
    )


async def block(response: aiohttp.ClientResponse, within: float = 3.0) -> list[str]:
    """The next block of the stream (an event, or a comment): its lines."""
    lines: list[str] = []
    async with asyncio.timeout(within):
        while True:
            raw = await response.content.readline()
            if not raw:
                raise EOFError(f"the stream ended after {lines}")
            line = raw.decode().rstrip("\r\n")
            if line:
                lines.append(line)
            elif lines:
                return lines


async def event(response: aiohttp.ClientResponse, within: float = 3.0) -> list[str]:
    """The next event, past keep-alive comments and the ``retry:`` block."""
    while True:
        lines = await block(response, within)
        if not all(line.startswith((":", "retry:")) for line in lines):
            return lines


async def test_a_stream_sends_each_published_message_with_its_id(
    make_project: ProjectFactory,
) -> None:
    async with live_client(events_project(make_project)) as client:
        hub = broadcast(client.app)
        response = await client.get("/events", headers={"X-Request-ID": "sse-test-1"})
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["X-Accel-Buffering"] == "no"  # nginx: do not buffer
        assert response.headers["X-Request-ID"] == "sse-test-1"
        assert response.headers["Server"] == "aiosite"
        assert await block(response) == ["retry: 3000"]
        await eventually(lambda: hub.subscriber_count("posts") == 1)
        assert live_connections(client.app).event_streams == 1
        first = await hub.publish("posts", {"title": "Hello", "tags": ["a"]})
        assert await event(response) == [f"id: {first}", 'data: {"title":"Hello","tags":["a"]}']
        await hub.publish("elsewhere", {"title": "not here"})
        second = await hub.publish("posts", "plain")
        assert await event(response) == [f"id: {second}", 'data: "plain"']
        response.close()


async def test_event_names_transforms_and_several_channels(make_project: ProjectFactory) -> None:
    async with live_client(events_project(make_project)) as client:
        hub = broadcast(client.app)
        response = await client.get("/titles")
        await eventually(lambda: hub.subscriber_count() == 1)
        posted = await hub.publish("posts", {"title": "From posts"})
        await hub.publish("posts", {"body": "no title: skipped"})
        paged = await hub.publish("pages", {"title": "From pages"})
        assert await event(response) == [f"id: {posted}", "event: title", "data: From posts"]
        assert await event(response) == [f"id: {paged}", "event: title", "data: From pages"]
        response.close()


async def test_keep_alive_comments_arrive_on_a_quiet_stream(make_project: ProjectFactory) -> None:
    root = events_project(make_project, "sse:\n  keepalive: 0.2\n  retry_ms: 0\n")
    async with live_client(root) as client:
        response = await client.get("/events")
        started = time.monotonic()
        assert await block(response, within=2) == [": ping"]  # no retry: with retry_ms 0
        assert await block(response, within=2) == [": ping"]
        assert time.monotonic() - started < 1.5
        response.close()


async def test_last_event_id_replays_the_missed_messages_first(
    make_project: ProjectFactory,
) -> None:
    async with live_client(events_project(make_project)) as client:
        hub = broadcast(client.app)
        ids = [await hub.publish("posts", {"n": n}) for n in range(4)]
        assert None not in ids
        response = await client.get("/events", headers={"Last-Event-ID": str(ids[1])})
        assert await event(response) == [f"id: {ids[2]}", 'data: {"n":2}']
        assert await event(response) == [f"id: {ids[3]}", 'data: {"n":3}']
        await eventually(lambda: hub.subscriber_count("posts") == 1)
        live = await hub.publish("posts", {"n": 4})
        assert await event(response) == [f"id: {live}", 'data: {"n":4}']
        response.close()
        # A route that does not resume ignores the header.
        titles = await client.get("/titles", headers={"Last-Event-ID": str(ids[0])})
        await eventually(lambda: hub.subscriber_count("posts") == 1)
        fresh = await hub.publish("posts", {"title": "only new"})
        assert await event(titles) == [f"id: {fresh}", "event: title", "data: only new"]
        titles.close()


async def test_the_connection_limit_answers_503_with_retry_after(
    make_project: ProjectFactory,
) -> None:
    root = events_project(make_project, "sse:\n  max_connections: 1\n")
    async with live_client(root) as client:
        first = await client.get("/events")
        assert first.status == 200
        refused = await client.get("/events")
        assert refused.status == 503
        assert refused.headers["Retry-After"] == "5"
        first.close()
        await eventually(lambda: live_connections(client.app).event_streams == 0)
        again = await client.get("/events")
        assert again.status == 200
        again.close()


async def test_a_client_that_leaves_is_cleaned_up_promptly(make_project: ProjectFactory) -> None:
    async with live_client(events_project(make_project)) as client:
        hub = broadcast(client.app)
        response = await client.get("/events")
        await eventually(lambda: hub.subscriber_count("posts") == 1)
        started = time.monotonic()
        response.close()  # the connection goes; nothing is published to notice it by
        await eventually(lambda: live_connections(client.app).total == 0, within=3)
        assert hub.subscriber_count() == 0
        assert time.monotonic() - started < 2


async def test_a_client_that_reads_nothing_is_dropped_after_send_timeout(
    make_project: ProjectFactory,
) -> None:
    root = events_project(make_project, "sse:\n  send_timeout: 0.5\n")
    async with live_client(root) as client:
        hub = broadcast(client.app)
        _, writer = await asyncio.open_connection("127.0.0.1", client.port)
        try:
            writer.write(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{client.port}\r\n\r\n".encode())
            await eventually(lambda: hub.subscriber_count("posts") == 1)
            transport = writer.transport
            assert isinstance(transport, asyncio.ReadTransport)
            transport.pause_reading()  # reads nothing at all from now on
            published = 0
            # Dropped by the site's sweep, or first by the kernel: aiohttp-sse gives the
            # connection a TCP user timeout of send_timeout where the system has one.
            while live_connections(client.app).event_streams:
                assert published < 300, "the stream was never dropped"
                await hub.publish("posts", {"n": published, "chunk": "x" * 60_000})
                published += 1
                await asyncio.sleep(0.02)
            assert hub.subscriber_count() == 0
        finally:
            writer.close()


async def test_open_event_stream_sends_a_handlers_own_events(make_project: ProjectFactory) -> None:
    async with live_client(events_project(make_project)) as client:
        response = await client.get("/ticks")
        assert response.headers["X-Request-ID"]
        assert await block(response) == ["retry: 3000"]
        for n in range(3):
            assert await event(response) == [f"id: t{n}", "event: tick", f"data: tick {n}"]
        with pytest.raises(EOFError):
            await block(response)
        assert live_connections(client.app).total == 0


async def test_a_failure_mid_stream_ends_it_and_is_logged_once(
    make_project: ProjectFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    async with live_client(events_project(make_project)) as client:
        response = await client.get("/breaks")
        assert response.status == 200
        assert await event(response) == ["data: first"]
        # No error page written into the stream: it just ends.
        with pytest.raises((EOFError, aiohttp.ClientPayloadError)):
            await block(response)
        await eventually(lambda: live_connections(client.app).total == 0)
        assert (await client.get("/ticks")).status == 200
    logged = [r for r in caplog.records if r.exc_info and "broken mid-stream" in str(r.exc_info[1])]
    assert len(logged) == 1
    assert "Unhandled RuntimeError in GET /breaks" in logged[0].getMessage()
    # No error page after the stream's head: the access log has its 200, not a 500.
    (access,) = [
        r.getMessage()
        for r in caplog.records
        if r.name == "aiohttp.access" and "GET /breaks" in r.getMessage()
    ]
    assert '" 200 ' in access


async def test_stopping_the_site_ends_every_stream_cleanly(
    make_project: ProjectFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = SiteServer(load_site(events_project(make_project), "test"))
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        streams = [await session.get(server.make_url("/events")) for _ in range(2)]
        await eventually(lambda: live_connections(server.app).event_streams == 2)
        started = time.monotonic()
        stopping = asyncio.create_task(server.close())  # runner.cleanup()
        for response in streams:
            assert await block(response) == ["retry: 3000"]
            # The end of the chunked body: a clean end, no ClientPayloadError.
            with pytest.raises(EOFError):
                await block(response)
            assert response.content.at_eof()
        await stopping
        # The handlers end by themselves, well within the grace the shutdown gives them.
        assert time.monotonic() - started < SHUTDOWN_GRACE + 3
        assert "still open" not in caplog.text
        assert live_connections(server.app).total == 0


@pytest.fixture
async def direct_hub() -> AsyncIterator[Hub]:
    """A hub on the shared Redis, not through the test's proxy: another process's."""
    settings = settings_class({"channels": ChannelsSettings}).model_construct(
        redis=RedisSettings(url=f"redis://{REDIS_ADDRESS[0]}:{REDIS_ADDRESS[1]}/{REDIS_DB}"),
        channels=ChannelsSettings(backend="redis"),
    )
    hub = make_hub(settings)
    yield hub
    await hub.close()


async def test_after_an_outage_of_the_hub_a_stream_ends_and_the_browser_catches_up(
    make_project: ProjectFactory,
    redis_proxy: TcpProxy,  # noqa: F811
    direct_hub: Hub,
    channel_name: str,  # noqa: F811
) -> None:
    root = events_project(make_project, redis_hub_yaml(redis_proxy.port))
    async with live_client(root) as client:
        hub = broadcast(client.app)
        response = await client.get(f"/events-on/{channel_name}")
        await eventually(lambda: hub.subscriber_count(channel_name) == 1)
        before = await direct_hub.publish(channel_name, "before")
        assert before is not None
        assert await event(response) == [f"id: {before}", 'data: "before"']
        # Redis out of this site's reach for a moment; another process publishes.
        await redis_proxy.stop()
        missed = await direct_hub.publish(channel_name, "missed")
        await redis_proxy.start()
        # The stream ends by itself, as the browser's EventSource then reconnects...
        with pytest.raises(EOFError):
            await event(response, within=10)
        await eventually(lambda: live_connections(client.app).total == 0)
        # ...with the last id it saw, and gets what it missed first.
        again = await client.get(f"/events-on/{channel_name}", headers={"Last-Event-ID": before})
        assert await event(again) == [f"id: {missed}", 'data: "missed"']
        await eventually(lambda: hub.subscriber_count(channel_name) == 1)
        after = await direct_hub.publish(channel_name, "after")
        assert await event(again) == [f"id: {after}", 'data: "after"']
        again.close()
