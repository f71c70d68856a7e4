"""The circuit breaker: opens after repeated failures and fails fast without touching the
upstream, half-opens after ``reset_after`` and closes once the upstream answers again."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest
from aiohttp import web

from tests.conftest import ProjectFactory, site_client
from tests.http.support import echo, services, site_project, sleeping, status, upstream

RESET_AFTER = 0.3


class Switch:
    """An upstream that is down (503) while ``down`` is set."""

    def __init__(self) -> None:
        self.down = True

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        if self.down:
            return web.json_response({"error": 503}, status=503)
        return await echo(request)


async def test_the_breaker_opens_fails_fast_half_opens_and_closes(
    make_project: ProjectFactory, caplog: pytest.LogCaptureFixture
) -> None:
    switch = Switch()
    async with upstream(switch) as weather:
        breaker = {"failures": 3, "reset_after": RESET_AFTER}
        settings = {"base_url": weather.url, "retries": 0, "circuit_breaker": breaker}
        root = site_project(make_project, {"services": services(weather=settings)})
        async with site_client(root) as client:
            caplog.set_level(logging.INFO, logger="aiosite.http")
            for _ in range(3):
                assert (await client.get("/call")).status == 502
            assert weather.hits == 3
            # Open: answered at once, the upstream left alone.
            resp = await client.get("/api/call")
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "1"
            message = (await resp.json())["error"]["message"]
            assert message == "The weather service is unavailable; try again in 1 second."
            assert (await client.get("/call")).status == 503
            assert weather.hits == 3

            # Half-open after reset_after: one probe goes through; it fails, so open again.
            await asyncio.sleep(RESET_AFTER + 0.1)
            assert (await client.get("/call")).status == 502
            assert weather.hits == 4
            assert (await client.get("/call")).status == 503
            assert weather.hits == 4

            # Recovered: the next probe succeeds and closes the breaker.
            switch.down = False
            await asyncio.sleep(RESET_AFTER + 0.1)
            for _ in range(3):
                assert (await client.get("/call")).status == 200
            assert weather.hits == 7
    lines = [r.getMessage() for r in caplog.records if r.name == "aiosite.http"]
    opened = (
        rf"Upstream service 'weather': GET {re.escape(weather.url)}/today failed: circuit "
        r"breaker open for 0\.\d more seconds; answered 503 to GET /api/call"
    )
    assert any(re.fullmatch(opened, line) for line in lines)
    changes = [line for line in lines if line.startswith("Circuit breaker")]
    assert changes == [
        "Circuit breaker of service 'weather' opened: calls fail at once",
        "Circuit breaker of service 'weather' half-open: one call probes it",
        "Circuit breaker of service 'weather' opened: calls fail at once",
        "Circuit breaker of service 'weather' half-open: one call probes it",
        "Circuit breaker of service 'weather' closed: the service answers again",
    ]


async def test_failed_retries_count_and_an_open_breaker_stops_them(
    make_project: ProjectFactory,
) -> None:
    async with upstream(Switch()) as weather:
        breaker = {"failures": 2, "reset_after": 30}
        settings = {"base_url": weather.url, "retries": 5, "circuit_breaker": breaker}
        root = site_project(make_project, {"services": services(weather=settings)})
        async with site_client(root) as client:
            # Two failed attempts open the breaker; the retries that remain stop there.
            resp = await client.get("/call")
            assert resp.status == 503
            assert int(resp.headers["Retry-After"]) in (29, 30)
    assert weather.hits == 2


async def test_4xx_answers_do_not_count_and_a_null_breaker_is_none(
    make_project: ProjectFactory,
) -> None:
    async def not_found(request: web.Request) -> web.Response:
        return web.json_response({"error": 404}, status=404)

    async with upstream(not_found) as news, upstream(Switch()) as weather:
        root = site_project(
            make_project,
            {
                "circuit_breaker": {"failures": 1, "reset_after": 30},
                "retries": 0,
                "services": services(
                    news={"base_url": news.url},
                    weather={"base_url": weather.url, "circuit_breaker": None},
                ),
            },
        )
        async with site_client(root) as client:
            for _ in range(3):
                assert (await client.get("/call?service=news")).status == 200
                assert (await client.get("/call?service=weather")).status == 502
    assert news.hits == 3  # the site's breaker (one failure opens it) saw none
    assert weather.hits == 3  # this service has none


async def test_half_open_lets_exactly_one_probe_through(make_project: ProjectFactory) -> None:
    switch = Switch()
    release = asyncio.Event()

    async def held(request: web.Request) -> web.StreamResponse:
        if switch.down:
            return await switch(request)
        await release.wait()  # the probe stays under way until the test lets it go
        return await echo(request)

    async with upstream(held) as weather:
        breaker = {"failures": 1, "reset_after": RESET_AFTER}
        settings = {"base_url": weather.url, "retries": 0, "circuit_breaker": breaker}
        root = site_project(make_project, {"services": services(weather=settings)})
        async with site_client(root) as client:
            assert (await client.get("/call")).status == 502  # opened
            switch.down = False
            await asyncio.sleep(RESET_AFTER + 0.1)
            answered = 0
            all_but_one = asyncio.Event()

            async def call() -> int:
                nonlocal answered
                resp = await client.get("/call")
                answered += 1
                if answered == 19:
                    all_but_one.set()
                return resp.status

            calls = [asyncio.ensure_future(call()) for _ in range(20)]
            # Nineteen answered while the probe is held at the upstream.
            await asyncio.wait_for(all_but_one.wait(), 30)
            assert weather.hits == 2  # the opening failure, then the one probe
            release.set()
            answers = sorted(await asyncio.gather(*calls))
    assert answers == [200] + [503] * 19
    assert weather.hits == 2


async def test_cancelled_calls_do_not_open_a_healthy_services_breaker(
    make_project: ProjectFactory,
) -> None:
    async with upstream(sleeping(0.5)) as weather, upstream(status(500)) as news:
        root = site_project(
            make_project,
            {
                "retries": 0,
                "circuit_breaker": {"failures": 1, "reset_after": 30},
                "services": services(
                    weather={"base_url": weather.url},
                    news={"base_url": news.url, "circuit_breaker": None},
                ),
            },
        )
        async with site_client(root) as client:
            # The news fails first; the weather call still under way is cancelled.
            for _ in range(3):
                resp = await client.get("/both?deadline=10&partial=0")
                assert resp.status == 502
                assert "The news service failed (HTTP 500)." in await resp.text()
            # A cancellation is no failure of the weather service's: its breaker (one
            # failure opens it) is still closed.
            assert (await client.get("/call")).status == 200
    assert news.hits == 3
