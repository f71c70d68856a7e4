"""Tests of sites that call upstreams: nothing leaves loopback, fakes stand in for
services, and the pytest plugin turns the guard on for every site it builds."""

from __future__ import annotations

import re
import time

import pytest
from aiohttp import web

from aiosite import service
from aiosite.http import OutboundRequestBlocked, is_loopback
from aiosite.testing import fake_upstream
from tests.conftest import ProjectFactory, site_client
from tests.http.support import echo, services, site_project, upstream

pytest_plugins = ["pytester"]

GUARDED = {
    "outbound": "loopback",
    "services": services(weather={"base_url": "https://api.example.com/v1"}),
}


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LocalHost", True),
        ("localhost.", False),  # a name for a resolver to look up, maybe elsewhere
        ("evil.localhost", False),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("example.com", False),
        ("93.184.215.14", False),
        ("::ffff:93.184.215.14", False),
        ("::ffff:127.0.0.1", True),  # 127.0.0.1 mapped into IPv6
        ("[::ffff:7f00:1]", True),
        ("", False),
        (None, False),
    ],
)
def test_loopback_hosts(host: str | None, loopback: bool) -> None:
    assert is_loopback(host) is loopback


async def test_a_service_without_a_fake_fails_before_connecting(
    make_project: ProjectFactory,
) -> None:
    root = site_project(make_project, GUARDED)
    async with site_client(root) as client:
        started = time.monotonic()
        resp = await client.get("/call")
        assert time.monotonic() - started < 5  # no connection tried, no network needed
        assert resp.status == 500
        text = await resp.text()
        with pytest.raises(OutboundRequestBlocked) as caught:
            await service(client.app, "weather").get("/today")
    assert "outbound request blocked: GET https://api.example.com/v1/today" in text
    assert "(the base URL of the service &#39;weather&#39;)" in text
    message = str(caught.value)
    assert 'aiosite.testing.fake_upstream(site, "weather", handler_or_app)' in message
    assert "http.outbound: loopback" in message


async def test_any_client_call_beyond_loopback_fails_with_the_way_to_fake_it(
    make_project: ProjectFactory,
) -> None:
    root = site_project(make_project, GUARDED)
    async with site_client(root) as client, upstream(echo) as local:
        resp = await client.get("/raw", params={"url": "http://93.184.215.14/x?key=secret"})
        assert resp.status == 500
        text = await resp.text()
        # Loopback stays open: the site's own tests run servers there.
        assert (await client.get("/raw", params={"url": local.url + "/ok"})).status == 200
    assert "outbound request blocked: GET http://93.184.215.14/x goes to a host" in text
    assert "secret" not in text
    assert "fake.url" in text


async def test_a_redirect_beyond_loopback_is_blocked_too(make_project: ProjectFactory) -> None:
    async def away(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://example.com/elsewhere")

    root = site_project(make_project, GUARDED)
    async with site_client(root) as client, upstream(away) as local:
        resp = await client.get("/raw", params={"url": local.url + "/go"})
        assert resp.status == 500
        assert "GET http://example.com/elsewhere" in await resp.text()


async def test_a_redirect_that_names_its_target_in_a_uri_header_is_blocked(
    make_project: ProjectFactory,
) -> None:
    async def away(request: web.Request) -> web.Response:
        # The obsolete header aiohttp still follows when there is no Location.
        return web.Response(status=302, headers={"URI": "http://93.184.215.14/elsewhere"})

    root = site_project(make_project, GUARDED)
    async with site_client(root) as client, upstream(away) as local:
        resp = await client.get("/raw", params={"url": local.url + "/go"})
        assert resp.status == 500
        assert "outbound request blocked: GET http://93.184.215.14/elsewhere" in (await resp.text())
    assert local.hits == 1


async def test_a_proxy_beyond_loopback_is_blocked(make_project: ProjectFactory) -> None:
    root = site_project(make_project, GUARDED)
    async with site_client(root) as client, fake_upstream(client, "weather", echo) as fake:
        with pytest.raises(
            OutboundRequestBlocked, match=re.escape("proxy http://93.184.215.14:3128")
        ):
            await service(client.app, "weather").get("/today", proxy="http://93.184.215.14:3128")
        # A proxy on loopback is allowed: the fake serves as one (it answers any path).
        resp = await service(client.app, "weather").get("/today", proxy=str(fake.url))
        assert resp.status == 200


async def test_a_fake_upstream_serves_the_service_while_it_runs(
    make_project: ProjectFactory,
) -> None:
    async def weather(request: web.Request) -> web.Response:
        return web.json_response({"sky": "clear", "path": request.path})

    root = site_project(make_project, GUARDED)
    async with site_client(root) as client:
        async with fake_upstream(client.app, "weather", weather) as fake:
            resp = await client.get("/call")
            assert resp.status == 200
            # The paths the real service would get: its base URL's path is kept.
            body = {"sky": "clear", "path": "/v1/today"}
            assert await resp.json() == {"status": 200, "body": body}
            assert fake.url.host == "127.0.0.1"
            assert service(client.app, "weather").base_url == fake.url.with_path("/v1")
        assert (await client.get("/call")).status == 500  # the fake is gone


async def test_a_fake_application_for_a_service_the_settings_do_not_list(
    make_project: ProjectFactory,
) -> None:
    fake = web.Application()
    fake.router.add_get("/today", echo)
    root = site_project(make_project, GUARDED)
    async with site_client(root) as client, fake_upstream(client, "news", fake):
        resp = await client.get("/call?service=news", headers={"X-Request-ID": "from-test"})
        assert resp.status == 200
        assert (await resp.json())["body"]["request_id"] == "from-test"


PROJECT_ROUTES = """\
from aiohttp import web

from aiosite import Routes, json_response, service

routes = Routes()


@routes.get("/today", name="today")
async def today(request: web.Request) -> web.Response:
    resp = await service(request, "weather").get("/today")
    return json_response(resp.json())
"""

PROJECT_TESTS = """\
from aiohttp import web

from aiosite.http import HttpSettings
from aiosite.testing import fake_upstream


async def weather(request: web.Request) -> web.Response:
    return web.json_response({"sky": "clear"})


def test_outbound_is_loopback(site_settings):
    assert site_settings.section(HttpSettings).outbound == "loopback"


async def test_with_a_fake(site, client):
    async with fake_upstream(site, "weather", weather):
        resp = await client.get("/today")
    assert await resp.json() == {"sky": "clear"}


async def test_without_a_fake(client):
    resp = await client.get("/today")
    assert resp.status == 200, await resp.text()
"""


def test_the_plugin_builds_sites_that_call_nothing_beyond_loopback(
    pytester: pytest.Pytester,
) -> None:
    files = {
        "pytest.ini": "[pytest]\nasyncio_mode = auto\n"
        "asyncio_default_fixture_loop_scope = function\nfilterwarnings = error\n",
        # No http.outbound in the test settings: the plugin sets it.
        "config/default.yaml": "site:\n  package: upsite\napps:\n  - upsite.home\n"
        "http:\n  services:\n    weather:\n      base_url: https://api.example.com/v1\n",
        "config/test.yaml": "{}\n",
        "upsite/__init__.py": "",
        "upsite/home/__init__.py": 'from aiosite import App\n\napp = App("home", prefix="")\n',
        "upsite/home/routes.py": PROJECT_ROUTES,
        "tests/test_today.py": PROJECT_TESTS,
    }
    for name, text in files.items():
        path = pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_without_a_fake*",
            "*outbound request blocked: GET https://api.example.com/v1/today*",
        ]
    )
