"""Redis sessions when Redis misbehaves: a killed connection, a paused server, a server
that is not there or does not answer. Each test that takes something away uses a Redis
database of its own (13, 14) and never flushes the shared server; the pause test
pauses it for at most 5 seconds (CLIENT PAUSE needs Redis 6.2) and always undoes it."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.conftest import REDIS_ADDRESS, require_service, site_client
from tests.sessions.support import forget_stale_auth_app, session_project

KILL_DB = 13
PAUSE_DB = 14
# How long the paused test stops the whole server (every database): once, and long
# enough that a 503 well before its end can only come from the client's own timeout.
PAUSE_MS = 5000
SOCKET_TIMEOUT = 0.5


def _project(make_project: Callable[..., Path], test_yaml: str) -> Path:
    return session_project(make_project, test_yaml)


def _redis_yaml(db: int, prefix: str, extra: str = "") -> str:
    host, port = REDIS_ADDRESS
    return (
        f"redis:\n  url: redis://{host}:{port}/{db}\n{extra}"
        f"session:\n  backend: redis\n  redis_prefix: '{prefix}'\n"
    )


@asynccontextmanager
async def _admin(db: int) -> AsyncIterator[aioredis.Redis]:
    """A client of the test's own database, to look at and take away connections; it
    waits out a pause of the server (PAUSE_MS) rather than time out."""
    client = aioredis.Redis(
        host=REDIS_ADDRESS[0], port=REDIS_ADDRESS[1], db=db, socket_timeout=PAUSE_MS / 1000 + 5
    )
    try:
        yield client
    finally:
        await client.aclose()


async def _forget(db: int, prefix: str) -> None:
    async with _admin(db) as admin:
        keys = [key async for key in admin.scan_iter(match=prefix + "*")]
        if keys:
            await admin.delete(*keys)


@asynccontextmanager
async def _silent_redis() -> AsyncIterator[int]:
    """The port of a server that accepts connections and never answers, as a Redis
    that hangs (paused, overloaded, behind a network that drops replies) looks to a
    client, without pausing the shared server."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read()  # whatever the client sends, until it goes

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in held:
            writer.close()
        await server.wait_closed()


@pytest.fixture
def prefix() -> str:
    require_service("Redis", *REDIS_ADDRESS)
    return f"aiosite-test-outage:{uuid.uuid4().hex[:12]}:"


async def test_sessions_survive_a_connection_redis_killed(
    make_project: Callable[..., Path], prefix: str
) -> None:
    root = _project(make_project, _redis_yaml(KILL_DB, prefix))
    try:
        async with site_client(root) as client, _admin(KILL_DB) as admin:
            assert await (await client.get("/count")).text() == "1"
            connection_id = int(await (await client.get("/redis-id")).text())
            # The site's connection is named, on the database the redis: section names.
            listed = await admin.client_list()
            (ours,) = [entry for entry in listed if int(entry["id"]) == connection_id]
            assert ours["name"] == "aiosite.sessions"
            assert int(ours["db"]) == KILL_DB
            assert await admin.client_kill_filter(_id=connection_id) == 1

            response = await client.get("/count")
            assert response.status == 200
            assert await response.text() == "2"  # the session is intact
            assert int(await (await client.get("/redis-id")).text()) != connection_id
            assert await (await client.get("/peek")).text() == "2"
    finally:
        await _forget(KILL_DB, prefix)


async def test_a_paused_redis_answers_503_within_the_timeout_then_recovers(
    make_project: Callable[..., Path], prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    timeouts = f"  socket_timeout: {SOCKET_TIMEOUT}\n  connect_timeout: {SOCKET_TIMEOUT}\n"
    root = _project(make_project, _redis_yaml(PAUSE_DB, prefix, timeouts))
    try:
        async with site_client(root) as client, _admin(PAUSE_DB) as admin:
            assert await (await client.get("/count")).text() == "1"
            caplog.clear()
            await admin.execute_command("CLIENT", "PAUSE", PAUSE_MS, "ALL")
            try:
                started = time.monotonic()
                response = await client.get("/count")
                waited = time.monotonic() - started
                assert response.status == 503
                assert response.headers["Retry-After"] == "5"
                assert "Sessions are unavailable" in await response.text()
                # The read timed out, unretried: well before the pause ends.
                assert SOCKET_TIMEOUT * 0.8 <= waited < 3.5
                # Pages that do not use the session are served meanwhile.
                assert (await client.get("/plain")).status == 200
            finally:
                # Answered once the pause is over (ALL pauses this command too): the
                # server is back for everybody before the test goes on.
                await admin.execute_command("CLIENT", "UNPAUSE")
            response = await client.get("/count")
            assert response.status == 200
            assert await response.text() == "2"  # nothing was lost or half-written
    finally:
        await _forget(PAUSE_DB, prefix)
    warnings = [r for r in caplog.records if r.name == "aiosite.sessions"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert warnings[0].levelno == logging.WARNING
    assert warnings[0].exc_info is None
    assert "TimeoutError" in warnings[0].getMessage()
    assert "GET /count" in warnings[0].getMessage()


async def test_redis_down_is_a_503_that_names_no_secret(
    make_project: Callable[..., Path], unused_tcp_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    password = "pw-" + uuid.uuid4().hex
    root = _project(
        make_project,
        f"redis:\n  url: redis://:{password}@127.0.0.1:{unused_tcp_port}/0\n"
        "session:\n  backend: redis\n",
    )
    async with site_client(root) as client:
        caplog.clear()
        response = await client.get("/count", cookies={"aiosite_session": "y" * 43})
        assert response.status == 503
        assert response.headers["Retry-After"] == "5"
        page = await response.text()
        assert "Sessions are unavailable" in page
        assert password not in page
        assert str(unused_tcp_port) not in page
        # A visitor without a session cookie costs Redis nothing: served as usual.
        assert (await client.get("/peek")).status == 200
        assert (await client.get("/plain")).status == 200
    records = [r for r in caplog.records if r.name.startswith("aiosite")]
    assert all(password not in r.getMessage() for r in records)
    assert all(r.exc_info is None for r in records)  # no traceback anywhere
    warnings = [r for r in records if r.name == "aiosite.sessions"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert warnings[0].levelno == logging.WARNING
    assert warnings[0].exc_info is None
    assert "ConnectionError" in warnings[0].getMessage()


async def test_session_redis_url_overrides_the_sites_redis(
    make_project: Callable[..., Path], prefix: str, unused_tcp_port: int
) -> None:
    host, port = REDIS_ADDRESS
    # The site's Redis is not there; the sessions' own URL is what they use.
    yaml = (
        f"redis:\n  url: redis://127.0.0.1:{unused_tcp_port}/0\n"
        f"session:\n  backend: redis\n  redis_prefix: '{prefix}'\n"
        f"  redis_url: redis://{host}:{port}/{KILL_DB}\n"
    )
    try:
        async with site_client(_project(make_project, yaml)) as client:
            await client.get("/count")
            assert await (await client.get("/count")).text() == "2"
        async with _admin(KILL_DB) as admin:
            assert len([key async for key in admin.scan_iter(match=prefix + "*")]) == 1
    finally:
        await _forget(KILL_DB, prefix)


AUTH_SITE = """\
site:
  name: Test Site
  package: PKG
apps:
  - PKG.home
  - aiosite.contrib.auth
"""
# The site's own 503 page, with what a base template shows on every page.
UNAVAILABLE_PAGE = """\
<p id="who">{% if user.is_authenticated %}{{ user.username }}{% else %}Anonymous{% endif %}</p>
{% for category, text in flashed_messages() %}<p class="{{ category }}">{{ text }}</p>{% endfor %}
<p id="message">{{ message }}</p>
"""
SILENT_TIMEOUT = 1.0


async def test_the_error_page_of_a_silent_redis_waits_once_and_shows_nobody(
    make_project: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    forget_stale_auth_app()
    async with _silent_redis() as port:
        yaml = (
            f"redis:\n  url: redis://127.0.0.1:{port}/0\n"
            f"  socket_timeout: {SILENT_TIMEOUT}\n  connect_timeout: {SILENT_TIMEOUT}\n"
            "session:\n  backend: redis\n"
        )
        root = session_project(
            make_project,
            yaml,
            files={"PKG/templates/503.html": UNAVAILABLE_PAGE},
            default_yaml=AUTH_SITE,
        )
        async with site_client(root) as client:
            caplog.clear()
            started = time.monotonic()
            response = await client.get("/count", cookies={"aiosite_session": "y" * 43})
            waited = time.monotonic() - started
            page = await response.text()
    assert response.status == 503
    assert response.headers["Retry-After"] == "5"
    # The site's own template, whose user and flash messages did not ask Redis again.
    assert '<p id="who">Anonymous</p>' in page
    assert '<p id="message">Sessions are unavailable' in page
    assert "Set-Cookie" not in response.headers  # the unknown session is left alone
    # One wait for Redis: a second (the page asking again) would take twice as long.
    assert SILENT_TIMEOUT * 0.8 <= waited < SILENT_TIMEOUT * 1.5
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert warnings[0].name == "aiosite.sessions"
    assert "TimeoutError" in warnings[0].getMessage()


async def test_the_sites_own_redis_errors_are_not_a_sessions_outage(
    make_project: Callable[..., Path], prefix: str, unused_tcp_port: int
) -> None:
    root = _project(make_project, _redis_yaml(KILL_DB, prefix))
    try:
        async with site_client(root) as client:
            assert await (await client.get("/count")).text() == "1"
            response = await client.get("/own-redis", params={"port": str(unused_tcp_port)})
            assert response.status == 500
            assert "Sessions are unavailable" not in await response.text()
            assert await (await client.get("/count")).text() == "2"
    finally:
        await _forget(KILL_DB, prefix)
