"""Redirects an upstream answers with: a service's own headers stay with its origin, a
redirect that cannot be followed is the upstream's failure, and no query string (an
API key) reaches the log, whatever aiohttp's error says."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web

from aiosite import UpstreamUnavailable, service
from tests.conftest import ProjectFactory, site_client
from tests.http.support import echo, services, site_project, upstream

SENSITIVE = "k-secret-7"


async def test_the_services_headers_do_not_follow_a_redirect_to_another_origin(
    make_project: ProjectFactory,
) -> None:
    async with upstream(echo) as elsewhere:
        target = elsewhere.url

        async def redirecting(request: web.Request) -> web.StreamResponse:
            if request.path == "/here":
                raise web.HTTPFound("/today")  # the same origin
            if request.path == "/away":
                raise web.HTTPFound(target + "/today")  # another port: another origin
            return await echo(request)

        async with upstream(redirecting) as weather:
            settings = {"base_url": weather.url, "headers": {"X-Api-Key": SENSITIVE}}
            root = site_project(
                make_project, {"outbound": "loopback", "services": services(weather=settings)}
            )
            async with site_client(root) as client:
                weather_service = service(client.app, "weather")
                same = (await weather_service.get("/here")).json()
                away = await weather_service.get("/away", headers={"X-Request-ID": "r-1"})
    assert same["api_key"] == SENSITIVE
    assert str(away.url) == target + "/today"
    assert away.json()["api_key"] is None
    assert away.json()["request_id"] == "r-1"  # what is not the service's own goes on
    assert [r.headers.get("X-Api-Key") for r in weather.requests] == [SENSITIVE] * 3
    assert elsewhere.hits == 1


@pytest.mark.parametrize(
    "location",
    ["ftp://files.example.com/today", "http://[::1"],
    ids=["not-http", "not-a-url"],
)
async def test_a_redirect_that_cannot_be_followed_is_a_502(
    make_project: ProjectFactory, location: str
) -> None:
    async def bad(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": location})

    async with upstream(bad) as weather:
        root = site_project(make_project, {"services": services(weather={"base_url": weather.url})})
        async with site_client(root) as client:
            resp = await client.get("/api/call")
            assert resp.status == 502
            message = (await resp.json())["error"]["message"]
            with pytest.raises(UpstreamUnavailable) as caught:
                await service(client.app, "weather").get("/today")
    assert message == "The weather service sent an answer that could not be followed."
    assert not caught.value.transient
    assert weather.hits == 2  # not retried: it would redirect there again


async def test_no_query_string_in_the_log_of_a_redirect_loop(
    make_project: ProjectFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"/loop?api_key={SENSITIVE}&n={len(request.query)}")

    async with upstream(loop) as weather:
        root = site_project(
            make_project, {"services": services(weather={"base_url": weather.url, "retries": 1})}
        )
        async with site_client(root) as client:
            with caplog.at_level(logging.DEBUG):
                # The call itself has ?city=<SENSITIVE>, each redirect ?api_key=<SENSITIVE>.
                resp = await client.get(
                    "/call", params={"service": "weather", "path": "/loop", "city": SENSITIVE}
                )
            assert resp.status == 502
            assert SENSITIVE not in await resp.text()
    assert weather.hits == 20  # ten redirects, two attempts
    lines = [r.getMessage() for r in caplog.records if r.name == "aiosite.http"]
    assert any("TooManyRedirects (the last from " in line for line in lines)
    # What the site logs of its calls (the servers' access logs show what they got).
    logged = [r for r in caplog.records if r.name != "aiohttp.access"]
    assert {r.name for r in logged} >= {"aiosite.http", "stamina"}
    for record in logged:
        assert SENSITIVE not in record.getMessage()
        assert SENSITIVE not in str(vars(record))
