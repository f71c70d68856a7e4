"""Calls to named services through a running site: data, request ids, retries, and the
502/504 answers for upstreams that fail, time out or refuse connections."""

from __future__ import annotations

import asyncio
import gzip
import logging
import time

import pytest
from aiohttp import web

from aiosite import (
    ImproperlyConfigured,
    UpstreamResponse,
    UpstreamStatusError,
    UpstreamUnavailable,
    service,
)
from aiosite.http import SERVICES
from tests.conftest import ProjectFactory, site_client
from tests.http.support import (
    echo,
    failing_first,
    refused_url,
    services,
    site_project,
    sleeping,
    status,
    upstream,
)


async def test_a_call_returns_the_upstreams_data_and_passes_the_request_id(
    make_project: ProjectFactory,
) -> None:
    async with upstream(echo) as weather:
        root = site_project(
            make_project,
            {"services": services(weather={"base_url": weather.url + "/v1"})},
        )
        async with site_client(root) as client:
            resp = await client.get("/call?city=Oslo", headers={"X-Request-ID": "trace-42"})
            assert resp.status == 200
            body = (await resp.json())["body"]
            # Without an incoming id, the one the core made for the request goes on.
            second = await client.get("/call")
            second_body = (await second.json())["body"]
    assert body["request_id"] == "trace-42"
    assert body["path"] == "/v1/today"
    assert body["query"] == {"city": "Oslo"}
    assert body["user_agent"].startswith("aiosite/")
    assert second_body["request_id"] == second.headers["X-Request-ID"]
    assert weather.hits == 2


async def test_static_headers_and_a_service_called_from_the_application(
    make_project: ProjectFactory,
) -> None:
    async with upstream(echo) as weather:
        settings = {"base_url": weather.url, "headers": {"X-Api-Key": "k-secret-1"}}
        root = site_project(make_project, {"services": services(weather=settings)})
        async with site_client(root) as client:
            resp = await service(client.app, "weather").get("/today")
            # What a debug page or a log would show of the service: never its key.
            shown = repr(client.app[SERVICES].get("weather"))
    assert "k-secret-1" not in shown
    assert "weather" in shown
    assert isinstance(resp, UpstreamResponse)
    assert resp.ok
    assert resp.status == 200
    assert resp.content_type == "application/json"
    data = resp.json()
    assert data["api_key"] == "k-secret-1"
    assert data["request_id"] is None  # no request: no id to pass on
    assert '"/today"' in resp.text()


async def test_an_unknown_service_names_the_ones_there_are(make_project: ProjectFactory) -> None:
    root = site_project(make_project, {"services": {"weather": {"base_url": "http://127.0.0.1:9"}}})
    async with site_client(root) as client:
        with pytest.raises(ImproperlyConfigured, match="did you mean 'weather'") as caught:
            service(client.app, "wether")
    assert "the site has: 'weather'" in str(caught.value)


async def test_idempotent_calls_are_retried_until_they_succeed(
    make_project: ProjectFactory,
) -> None:
    async with upstream(failing_first(2)) as weather:
        root = site_project(
            make_project, {"services": services(weather={"base_url": weather.url, "retries": 2})}
        )
        async with site_client(root) as client:
            resp = await client.get("/call")
            assert resp.status == 200
    assert weather.hits == 3


async def test_a_post_is_not_retried_unless_its_caller_says_it_is_idempotent(
    make_project: ProjectFactory,
) -> None:
    async with upstream(failing_first(2)) as weather:
        root = site_project(
            make_project, {"services": services(weather={"base_url": weather.url, "retries": 2})}
        )
        async with site_client(root) as client:
            resp = await client.post("/call")
            assert resp.status == 502
            assert weather.hits == 1
            # The second of its failures, then an answer: retried on the caller's word.
            resp = await client.post("/call?idempotent=1")
            assert resp.status == 200
            assert weather.hits == 3


async def test_upstream_5xx_after_the_retries_is_a_502_with_a_clear_page(
    make_project: ProjectFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async with upstream(status(503)) as weather:
        root = site_project(
            make_project, {"services": services(weather={"base_url": weather.url, "retries": 2})}
        )
        async with site_client(root) as client:
            with caplog.at_level(logging.WARNING, logger="aiosite.http"):
                resp = await client.get("/call?city=Oslo")
            assert resp.status == 502
            assert "The weather service failed (HTTP 503)." in await resp.text()
            assert "text/html" in resp.headers["Content-Type"]
    assert weather.hits == 3
    # One line, no traceback, naming service, method, URL (not its query) and cause.
    (record,) = [r for r in caplog.records if r.name == "aiosite.http"]
    assert record.levelno == logging.WARNING
    assert record.exc_info is None
    line = record.getMessage()
    assert f"service 'weather': GET {weather.url}/today failed: HTTP 503" in line
    assert "answered 502 to GET /call" in line
    assert "city" not in line


async def test_a_json_error_on_an_api_route(make_project: ProjectFactory) -> None:
    async with upstream(status(500)) as weather:
        root = site_project(
            make_project, {"services": services(weather={"base_url": weather.url, "retries": 2})}
        )
        async with site_client(root) as client:
            resp = await client.get("/api/call")
            assert resp.status == 502
            error = (await resp.json())["error"]
    assert error == {
        "status": 502,
        "reason": "Bad Gateway",
        "message": "The weather service failed (HTTP 500).",
    }
    assert weather.hits == 1  # a 500 is the upstream's bug: not retried


async def test_4xx_answers_are_the_callers_to_handle(make_project: ProjectFactory) -> None:
    async with upstream(status(404)) as weather:
        root = site_project(
            make_project, {"services": services(weather={"base_url": weather.url, "retries": 2})}
        )
        async with site_client(root) as client:
            resp = await client.get("/call")
            assert resp.status == 200
            assert await resp.json() == {"status": 404, "body": {"error": 404}}
            answer = await service(client.app, "weather").get("/today")
    assert weather.hits == 2
    with pytest.raises(UpstreamStatusError) as caught:
        answer.raise_for_status()
    assert caught.value.upstream_status == 404
    assert caught.value.status == 502
    assert caught.value.response is answer


async def test_a_short_retry_after_is_waited_for_a_long_one_is_not(
    make_project: ProjectFactory,
) -> None:
    async with upstream(status(503, **{"Retry-After": "3600"})) as weather:
        root = site_project(
            make_project, {"services": services(weather={"base_url": weather.url, "retries": 2})}
        )
        async with site_client(root) as client:
            resp = await client.get("/call")
    assert resp.status == 502
    assert weather.hits == 1  # an hour exceeds backoff.max: no retry


async def test_an_upstream_that_hangs_past_the_timeout_is_a_504(
    make_project: ProjectFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async with upstream(sleeping(5)) as weather:
        settings = {"base_url": weather.url, "retries": 1, "timeout": {"total": 0.2}}
        root = site_project(make_project, {"services": services(weather=settings)})
        async with site_client(root) as client:
            started = time.monotonic()
            with caplog.at_level(logging.WARNING, logger="aiosite.http"):
                resp = await client.get("/call")
            elapsed = time.monotonic() - started
            assert resp.status == 504
            assert "The weather service did not answer in time." in await resp.text()
            # A handler that catches the error sees its class and status.
            caught = await client.get("/caught")
            assert await caught.text() == "UpstreamTimeout 504"
    assert weather.hits == 4  # two attempts per call
    assert elapsed < 4  # two timeouts of 0.2 s, not two upstream sleeps of 5 s
    (record,) = [r for r in caplog.records if r.name == "aiosite.http"]
    assert "no complete answer within 0.2 s" in record.getMessage()
    assert record.exc_info is None


async def test_a_refused_connection_is_a_502(
    make_project: ProjectFactory, caplog: pytest.LogCaptureFixture
) -> None:
    root = site_project(
        make_project, {"services": services(weather={"base_url": refused_url(), "retries": 1})}
    )
    async with site_client(root) as client:
        with caplog.at_level(logging.WARNING, logger="aiosite.http"):
            resp = await client.get("/api/call")
        assert resp.status == 502
        error = (await resp.json())["error"]
    assert error["message"] == "The weather service could not be reached."
    (record,) = [r for r in caplog.records if r.name == "aiosite.http"]
    assert "ClientConnectorError" in record.getMessage()


async def test_an_answer_larger_than_the_limit_is_a_502(make_project: ProjectFactory) -> None:
    async def big(request: web.Request) -> web.StreamResponse:
        # Streamed without a Content-Length: the limit is checked as it arrives.
        resp = web.StreamResponse()
        await resp.prepare(request)
        for _ in range(8):
            await resp.write(b"x" * 1024)
        await resp.write_eof()
        return resp

    async with upstream(big) as weather:
        root = site_project(
            make_project,
            {"max_response_size": 4096, "services": services(weather={"base_url": weather.url})},
        )
        async with site_client(root) as client:
            resp = await client.get("/call")
            assert resp.status == 502
            assert "too large" in await resp.text()
    assert weather.hits == 1  # never retried: it would be as large again


async def test_concurrent_calls_to_a_slow_upstream_overlap(make_project: ProjectFactory) -> None:
    release, all_in = asyncio.Event(), asyncio.Event()
    arrived = 0

    async def held(request: web.Request) -> web.Response:
        nonlocal arrived
        arrived += 1
        if arrived == 10:
            all_in.set()
        await release.wait()
        return await echo(request)

    async with upstream(held) as weather:
        root = site_project(make_project, {"services": services(weather={"base_url": weather.url})})
        async with site_client(root) as client:
            calls = [asyncio.ensure_future(client.get("/call")) for _ in range(10)]
            # All ten reach the upstream while none has been answered: they overlap.
            await asyncio.wait_for(all_in.wait(), 30)
            # And the site answers another request while they wait.
            fast = await client.get("/fast")
            assert fast.status == 200
            assert not any(call.done() for call in calls)
            release.set()
            answers = await asyncio.gather(*calls)
            assert [a.status for a in answers] == [200] * 10
    assert weather.hits == 10


async def test_a_compressed_answer_is_limited_by_its_decoded_size(
    make_project: ProjectFactory,
) -> None:
    bomb = gzip.compress(b"0" * 1_000_000)  # about a kilobyte, a megabyte decoded

    async def compressed(request: web.Request) -> web.Response:
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        return web.Response(body=bomb, headers=headers)

    assert len(bomb) < 64 * 1024
    async with upstream(compressed) as weather:
        root = site_project(
            make_project,
            {
                "max_response_size": 64 * 1024,
                "services": services(weather={"base_url": weather.url}),
            },
        )
        async with site_client(root) as client:
            resp = await client.get("/call")
            assert resp.status == 502
            assert "too large" in await resp.text()
    assert weather.hits == 1


async def test_a_body_that_is_not_json_or_text_is_the_upstreams_failure(
    make_project: ProjectFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async def html(request: web.Request) -> web.Response:
        if request.path == "/bogus-charset":
            return web.Response(body=b"sky", headers={"Content-Type": "text/plain; charset=nope"})
        return web.Response(text="<h1>Bad gateway</h1>", content_type="text/html")

    async with upstream(html) as weather:
        root = site_project(make_project, {"services": services(weather={"base_url": weather.url})})
        async with site_client(root) as client:
            with caplog.at_level(logging.WARNING, logger="aiosite.http"):
                resp = await client.get("/api/call")
            assert resp.status == 502
            message = (await resp.json())["error"]["message"]
            assert weather.hits == 1  # the same answer would come again: not retried
            bogus = await service(client.app, "weather").get("/bogus-charset")
    assert message == "The weather service sent an answer that is not JSON."
    (record,) = [r for r in caplog.records if r.name == "aiosite.http"]
    assert "failed: a text/html body that is not JSON" in record.getMessage()
    with pytest.raises(UpstreamUnavailable, match="could not be read") as caught:
        bogus.text()
    assert caught.value.status == 502
    assert not caught.value.transient
    assert caught.value.cause == "unknown charset 'nope'"
    assert bogus.text(encoding="ascii") == "sky"  # the caller's own choice
    with pytest.raises(LookupError):
        bogus.text(encoding="no-such-codec")  # the caller's mistake
    with pytest.raises(UpstreamUnavailable, match="not JSON"):
        bogus.json()
