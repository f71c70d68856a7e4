"""Fan-out with ``gather_upstreams``: combined results, partial results with the errors
of each upstream, and one deadline for them all."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from aiosite import Gathered, UpstreamTimeout, gather_upstreams
from tests.conftest import ProjectFactory, site_client
from tests.http.support import echo, services, site_project, sleeping, status, upstream


async def test_results_of_every_upstream(make_project: ProjectFactory) -> None:
    async with upstream(echo) as weather, upstream(sleeping(0.2)) as news:
        root = site_project(
            make_project,
            {"services": services(weather={"base_url": weather.url}, news={"base_url": news.url})},
        )
        async with site_client(root) as client:
            resp = await client.get("/both?deadline=30")
            assert resp.status == 200
            data = await resp.json()
    assert data["errors"] == {}
    assert data["results"]["news"] == {"slept": 0.2}
    assert data["results"]["weather"]["path"] == "/today"


async def test_partial_results_with_the_errors_of_each_upstream(
    make_project: ProjectFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async with upstream(status(503)) as weather, upstream(sleeping(5)) as news:
        root = site_project(
            make_project,
            {
                "retries": 0,
                "services": services(
                    weather={"base_url": weather.url}, news={"base_url": news.url}
                ),
            },
        )
        async with site_client(root) as client:
            started = time.monotonic()
            with caplog.at_level(logging.WARNING, logger="aiosite.http"):
                resp = await client.get("/both?deadline=0.3")
            elapsed = time.monotonic() - started
            assert resp.status == 200
            data = await resp.json()
    assert data == {
        "results": {},
        "errors": {
            "weather": {"status": 502, "error": "The weather service failed (HTTP 503)."},
            "news": {"status": 504, "error": "The news service did not answer in time."},
        },
    }
    assert elapsed < 4  # the deadline, not the upstream's five seconds
    lines = [r.getMessage() for r in caplog.records if r.name == "aiosite.http"]
    assert len(lines) == 2
    assert "no answer within the fan-out's deadline of 0.3 s" in lines[1]
    assert "left out of the answer to GET /both" in lines[1]


async def test_without_partial_results_the_first_failure_is_the_answer(
    make_project: ProjectFactory,
) -> None:
    async with upstream(echo) as weather, upstream(sleeping(5)) as news:
        root = site_project(
            make_project,
            {"services": services(weather={"base_url": weather.url}, news={"base_url": news.url})},
        )
        async with site_client(root) as client:
            resp = await client.get("/both?deadline=0.3&partial=0")
            assert resp.status == 504
            assert "The news service did not answer in time." in await resp.text()


async def answer(value: int) -> int:
    return value


async def never() -> int:
    await asyncio.sleep(10)
    return 0


async def broken() -> int:
    return 1 // 0


async def test_gathered_is_a_mapping_of_the_results() -> None:
    app = web.Application()  # outside a request: failures are logged without one
    gathered: Gathered[int] = await gather_upstreams(
        app, {"a": answer(1), "b": lambda: answer(2), "c": never}, deadline=0.1
    )
    assert dict(gathered) == {"a": 1, "b": 2}
    assert list(gathered) == ["a", "b"]
    assert len(gathered) == 2
    assert not gathered.complete
    assert isinstance(gathered.errors["c"], UpstreamTimeout)
    with pytest.raises(UpstreamTimeout):
        await gather_upstreams(app, {"c": never}, deadline=0.05, partial=False)
    with pytest.raises(ValueError, match="deadline"):
        await gather_upstreams(app, {}, deadline=0)
    assert (await gather_upstreams(app, {}, deadline=1)).complete


async def test_a_bug_in_a_call_is_raised_and_the_others_are_cancelled() -> None:
    slow = asyncio.ensure_future(never())
    started = time.monotonic()
    calls: dict[str, Awaitable[int] | Callable[[], Awaitable[int]]] = {"bug": broken, "slow": slow}
    with pytest.raises(ZeroDivisionError):
        await gather_upstreams(web.Application(), calls, deadline=60)
    assert slow.cancelled()
    assert time.monotonic() - started < 8  # raised at once, not at the deadline


async def test_coroutines_that_never_ran_are_closed_when_it_raises_early() -> None:
    passed = answer(1)
    with pytest.raises(ValueError, match="deadline"):
        await gather_upstreams(web.Application(), {"a": passed}, deadline=0)
    assert inspect.getcoroutinestate(passed) == inspect.CORO_CLOSED

    def fails() -> Awaitable[int]:
        raise RuntimeError("no call")

    later = answer(2)
    calls: dict[str, Awaitable[int] | Callable[[], Awaitable[int]]] = {"f": fails, "b": later}
    with pytest.raises(RuntimeError, match="no call"):
        await gather_upstreams(web.Application(), calls, deadline=1)
    assert inspect.getcoroutinestate(later) == inspect.CORO_CLOSED
