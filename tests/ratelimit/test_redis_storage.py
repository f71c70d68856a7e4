"""Rate limits counted in Redis: one budget for every site instance on the same Redis;
a Redis that is down lets requests through (or refuses them with 503, when configured)
and is reported once."""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from tests.conftest import REDIS_ADDRESS, ProjectFactory, require_service, site_client
from tests.db.proxy import TcpProxy
from tests.ratelimit.support import a_minute_at_most, limited_project

# A database of these tests' own, and keys under a prefix of each test's own.
REDIS_DB = 12


@pytest.fixture
async def key_prefix() -> AsyncIterator[str]:
    require_service("Redis", *REDIS_ADDRESS)
    prefix = f"aiosite-test-ratelimit-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = aioredis.Redis(host=REDIS_ADDRESS[0], port=REDIS_ADDRESS[1], db=REDIS_DB)
    try:
        async for key in client.scan_iter(match=prefix + "*"):
            await client.delete(key)
    finally:
        await client.aclose()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # nothing listens on it once the socket is closed


def redis_yaml(prefix: str, *, url: str | None = None, extra: str = "") -> str:
    host, port = REDIS_ADDRESS
    site_redis = f"redis:\n  url: redis://{host}:{port}/{REDIS_DB}\n"
    own = f"  redis_url: {url}\n" if url else ""
    return f"{site_redis}ratelimit:\n  storage: redis\n  key_prefix: {prefix}\n{own}{extra}"


async def test_two_site_instances_share_one_budget(
    make_project: ProjectFactory, key_prefix: str
) -> None:
    root = limited_project(make_project, redis_yaml(key_prefix))
    async with site_client(root) as first, site_client(root) as second:
        assert (await first.get("/limited")).ok
        assert (await second.get("/limited")).ok
        for client in (first, second):
            refused = await client.get("/limited")
            assert refused.status == 429
            a_minute_at_most(refused.headers["Retry-After"])
        # Counted in the site's Redis (redis.url), under the configured prefix.
        counter = aioredis.Redis(host=REDIS_ADDRESS[0], port=REDIS_ADDRESS[1], db=REDIS_DB)
        try:
            keys = [key async for key in counter.scan_iter(match=key_prefix + "*")]
        finally:
            await counter.aclose()
        assert len(keys) == 1


async def test_a_redis_that_is_down_lets_requests_through_and_is_reported_once(
    make_project: ProjectFactory, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    down = f"redis://127.0.0.1:{closed_port()}/0"
    # Asked again on every request: each one meets the outage.
    yaml = redis_yaml(key_prefix, url=down, extra="  outage_retry: 0\n")
    async with site_client(limited_project(make_project, yaml)) as client:
        with caplog.at_level(logging.INFO, logger="aiosite.ratelimit"):
            for _ in range(4):
                response = await client.get("/limited")
                assert (response.status, await response.text()) == (200, "served")
    reports = [r for r in caplog.records if r.name == "aiosite.ratelimit"]
    assert [r.levelno for r in reports] == [logging.WARNING]
    assert "Rate limits are off" in reports[0].getMessage()
    assert "let through unlimited" in reports[0].getMessage()


async def test_limits_are_back_when_redis_answers_again(
    make_project: ProjectFactory, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = TcpProxy(REDIS_ADDRESS)  # a Redis of this test's own to take away
    await proxy.start()
    through_proxy = f"redis://127.0.0.1:{proxy.port}/{REDIS_DB}"
    yaml = redis_yaml(key_prefix, url=through_proxy, extra="  outage_retry: 0\n")
    try:
        async with site_client(limited_project(make_project, yaml)) as client:
            with caplog.at_level(logging.INFO, logger="aiosite.ratelimit"):
                assert (await client.get("/limited")).ok
                await proxy.stop()
                for _ in range(3):
                    assert (await client.get("/limited")).ok
                await proxy.start()
                # The hit before the outage is still in Redis's window.
                assert (await client.get("/limited")).ok
                assert (await client.get("/limited")).status == 429
    finally:
        await proxy.stop()
    reports = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "aiosite.ratelimit"]
    assert [level for level, _ in reports] == [logging.WARNING, logging.INFO]
    assert "Rate limits are on again" in reports[1][1]


async def test_a_site_that_fails_closed_answers_503(
    make_project: ProjectFactory, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    down = f"redis://127.0.0.1:{closed_port()}/0"
    yaml = redis_yaml(key_prefix, url=down, extra="  fail_open: false\n")
    async with site_client(limited_project(make_project, yaml)) as client:
        with caplog.at_level(logging.INFO, logger="aiosite.ratelimit"):
            refused = await client.get("/limited")
        assert refused.status == 503
        assert refused.headers["Retry-After"] == "5"
        assert "try again shortly" in await refused.text()
        # Routes without a limit do not touch the store.
        assert (await client.get("/comments")).ok
    # The warning says what happens in this mode: refused, not "off".
    reports = [r.getMessage() for r in caplog.records if r.name == "aiosite.ratelimit"]
    assert len(reports) == 1
    assert "Rate limits cannot be counted" in reports[0]
    assert "rate-limited requests get 503" in reports[0]
    assert "let through" not in reports[0]


async def test_hit_rate_limit_raises_503_when_the_store_is_down_and_fails_closed(
    make_project: ProjectFactory, key_prefix: str
) -> None:
    # hit_rate_limit never refuses for being over the limit, but an outage is not that:
    # the handler's own answer (its "wait" text) is not reached.
    down = f"redis://127.0.0.1:{closed_port()}/0"
    yaml = redis_yaml(key_prefix, url=down, extra="  fail_open: false\n")
    async with site_client(limited_project(make_project, yaml)) as client:
        refused = await client.get("/inside", headers={"X-Token": "alice"})
        assert refused.status == 503
        assert refused.headers["Retry-After"] == "5"
        assert "try again shortly" in await refused.text()
        # An exempt request (no token) is not counted, so the outage does not touch it.
        assert await (await client.get("/inside")).text() == "inside"


async def test_hit_rate_limit_lets_requests_through_when_the_store_is_down_and_fails_open(
    make_project: ProjectFactory, key_prefix: str
) -> None:
    down = f"redis://127.0.0.1:{closed_port()}/0"
    yaml = redis_yaml(key_prefix, url=down, extra="  outage_retry: 0\n")
    async with site_client(limited_project(make_project, yaml)) as client:
        for _ in range(3):
            served = await client.get("/inside", headers={"X-Token": "alice"})
            assert (served.status, await served.text()) == (200, "inside")
