"""/api/dashboard: the upstreams of config/default.yaml's http.services, called at once
within one deadline. Each test serves them from small aiohttp servers of its own on free
loopback ports (aiosite.testing.fake_upstream)."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from blogsite.api.views import DASHBOARD_DEADLINE
from support import Client

from aiosite.testing import fake_upstream


class Upstreams:
    """The three upstreams, and what each was asked."""

    def __init__(self) -> None:
        self.paths: dict[str, list[str]] = {"weather": [], "news": [], "status": []}
        # The slow upstream answers once this is set (or much too late): the test ends
        # without waiting for it.
        self.release = asyncio.Event()

    async def weather(self, request: web.Request) -> web.Response:
        self.paths["weather"].append(request.path)
        return web.json_response({"sky": "clear", "celsius": 7})

    async def news(self, request: web.Request) -> web.Response:
        self.paths["news"].append(request.path)
        return web.json_response({"headlines": ["aiohttp 3.14"]})

    async def slow_news(self, request: web.Request) -> web.Response:
        self.paths["news"].append(request.path)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DASHBOARD_DEADLINE * 5):
                await self.release.wait()
        return web.json_response({"headlines": ["too late"]})

    async def status(self, request: web.Request) -> web.Response:
        self.paths["status"].append(request.path)
        return web.json_response({"ok": True})

    async def failing_status(self, request: web.Request) -> web.Response:
        self.paths["status"].append(request.path)
        return web.json_response({"error": "boom"}, status=500)


@pytest.fixture
async def upstreams() -> AsyncIterator[Upstreams]:
    serving = Upstreams()
    yield serving
    serving.release.set()


async def dashboard(client: Client) -> tuple[Any, float]:
    started = time.monotonic()
    resp = await client.get("/api/dashboard")
    elapsed = time.monotonic() - started
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "application/json"
    return await resp.json(), elapsed


async def test_dashboard_combines_every_upstream(client: Client, upstreams: Upstreams) -> None:
    async with (
        fake_upstream(client, "weather", upstreams.weather),
        fake_upstream(client, "news", upstreams.news),
        fake_upstream(client, "status", upstreams.status),
    ):
        data, elapsed = await dashboard(client)
    assert data == {
        "results": {
            "weather": {"sky": "clear", "celsius": 7},
            "news": {"headlines": ["aiohttp 3.14"]},
            "status": {"ok": True},
        },
        "errors": {},
    }
    assert upstreams.paths == {"weather": ["/today"], "news": ["/headlines"], "status": ["/status"]}
    assert elapsed < DASHBOARD_DEADLINE


async def test_dashboard_answers_by_its_deadline_with_what_came_back(
    client: Client, upstreams: Upstreams
) -> None:
    async with (
        fake_upstream(client, "weather", upstreams.weather),
        fake_upstream(client, "news", upstreams.slow_news),
        fake_upstream(client, "status", upstreams.failing_status),
    ):
        data, elapsed = await dashboard(client)
    assert data["results"] == {"weather": {"sky": "clear", "celsius": 7}}
    assert data["errors"] == {
        "news": {"status": 504, "error": "The news service did not answer in time."},
        "status": {"status": 502, "error": "The status service failed (HTTP 500)."},
    }
    # The slow upstream was called at once with the others, and cut off at the deadline:
    # the answer took the deadline, not the slow upstream's time nor the sum of all.
    assert upstreams.paths["news"] == ["/headlines"]
    assert DASHBOARD_DEADLINE <= elapsed < DASHBOARD_DEADLINE + 1.0
    # A 500 is the upstream's bug: not retried.
    assert upstreams.paths["status"] == ["/status"]


async def test_an_answer_that_is_no_json_or_an_error_status_is_that_upstreams_failure(
    client: Client, upstreams: Upstreams
) -> None:
    async def not_json(request: web.Request) -> web.Response:
        return web.Response(text="<html>maintenance</html>", content_type="text/html")

    async def not_found(request: web.Request) -> web.Response:
        return web.json_response({"error": "no such city"}, status=404)

    async with (
        fake_upstream(client, "weather", not_json),
        fake_upstream(client, "news", not_found),
        fake_upstream(client, "status", upstreams.status),
    ):
        data, _ = await dashboard(client)
    assert data["results"] == {"status": {"ok": True}}
    assert data["errors"] == {
        "weather": {"status": 502, "error": "The weather service sent an answer that is not JSON."},
        "news": {"status": 502, "error": "The news service failed (HTTP 404)."},
    }
