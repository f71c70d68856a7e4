"""The client's lifetime, the ``http:`` settings and their errors, and what a site that
calls no upstream pays for the battery."""

from __future__ import annotations

from urllib.parse import quote

import aiohttp
import pytest

from aiosite import ImproperlyConfigured, http_client, load_settings, load_site, service
from aiosite.http import (
    HTTP_CLIENT,
    SERVICES,
    BackoffSettings,
    BreakerSettings,
    HttpSettings,
)
from tests.conftest import ProjectFactory, site_client
from tests.http.support import echo, services, site_project, upstream
from tests.test_lazy_imports import imported, loaded


async def test_one_client_made_at_startup_and_closed_at_cleanup(
    make_project: ProjectFactory,
) -> None:
    root = site_project(make_project, {"limit": 7, "limit_per_host": 3})
    site = load_site(root, "test")
    with pytest.raises(RuntimeError, match="made when the site starts"):
        http_client(site)
    async with site_client(root) as client:
        session = http_client(client.app)
        assert session is client.app[HTTP_CLIENT]
        assert not session.closed
        connector = session.connector
        assert isinstance(connector, aiohttp.TCPConnector)
        assert (connector.limit, connector.limit_per_host) == (7, 3)
        assert session.timeout.total == 10
        assert session.timeout.sock_connect == 2
        # One session serves every visitor: it keeps no cookies between them.
        assert isinstance(session.cookie_jar, aiohttp.DummyCookieJar)
    assert session.closed
    with pytest.raises(RuntimeError, match="closed"):
        http_client(client.app)


def test_settings_resolve_per_service(make_project: ProjectFactory) -> None:
    root = site_project(
        make_project,
        {
            "timeout": {"connect": 1, "total": 5},
            "retries": 3,
            "services": {
                "weather": {
                    "base_url": "https://api.example.com/v1/",
                    "timeout": {"total": 2},
                    "retries": 0,
                    "circuit_breaker": None,
                },
                "news": {"base_url": "http://127.0.0.1:8001"},
            },
        },
    )
    http = load_settings(root, "test").section(HttpSettings)
    assert http.outbound == "any"
    assert http.user_agent.startswith("aiosite/")
    weather, news = http.services["weather"], http.services["news"]
    assert weather.breaker_or(http.circuit_breaker) is None
    assert news.breaker_or(http.circuit_breaker) == http.circuit_breaker
    assert http.circuit_breaker is not None
    assert (http.circuit_breaker.failures, http.circuit_breaker.reset_after) == (5, 30)


async def test_each_service_gets_its_own_timeouts_and_urls(make_project: ProjectFactory) -> None:
    root = site_project(
        make_project,
        {
            "timeout": {"connect": 1, "total": 5},
            "services": {
                "weather": {"base_url": "https://api.example.com/v1/", "timeout": {"total": 2}},
            },
        },
    )
    async with site_client(root) as client:
        weather = service(client.app, "weather")
        assert str(weather.url("/today")) == "https://api.example.com/v1/today"
        assert str(weather.url("today")) == "https://api.example.com/v1/today"
        with pytest.raises(ValueError, match="is a whole URL"):
            weather.url("https://elsewhere.example.com/")
        upstream = client.app[SERVICES].get("weather")
    assert (upstream.timeout.total, upstream.timeout.sock_connect) == (2, 1)
    assert upstream.retry is not None
    assert upstream.retry.retries == 2


@pytest.mark.parametrize(
    "path",
    [
        "../admin",
        "/v2/../../admin",
        "a/./b",
        "%2e%2e/admin",
        "%2E%2e%2Fadmin",
        "..%5cadmin",
        "today?admin=1",
        "today#x",
    ],
)
async def test_a_path_that_could_leave_the_base_url_is_refused_before_sending(
    make_project: ProjectFactory, path: str
) -> None:
    async with upstream(echo) as weather:
        root = site_project(
            make_project, {"services": services(weather={"base_url": weather.url + "/v1"})}
        )
        async with site_client(root) as client:
            with pytest.raises(ValueError, match=r"dot segment|query or fragment"):
                await service(client.app, "weather").get(path)
            # Quoted, a value is one segment under the base URL: no query, no fragment.
            value = quote("a/b?c#d", safe="")
            resp = await service(client.app, "weather").get(f"/users/{value}")
    assert weather.hits == 1
    assert str(resp.url).endswith("/v1/users/a%2Fb%3Fc%23d")
    assert resp.json()["path"] == "/v1/users/a/b?c#d"
    assert resp.json()["query"] == {}


async def test_a_services_partial_backoff_and_breaker_keep_the_sites_other_keys(
    make_project: ProjectFactory,
) -> None:
    root = site_project(
        make_project,
        {
            "backoff": {"initial": 0.2, "max": 3, "jitter": 0},
            "circuit_breaker": {"failures": 2, "reset_after": 7},
            "services": {
                "weather": {
                    "base_url": "http://127.0.0.1:9",
                    "backoff": {"max": 1},
                    "circuit_breaker": {"reset_after": 60},
                },
                "news": {"base_url": "http://127.0.0.1:9"},
            },
        },
    )
    async with site_client(root) as client:
        weather = client.app[SERVICES].get("weather")
        news = client.app[SERVICES].get("news")
    assert weather.retry is not None
    assert weather.retry.backoff == BackoffSettings(initial=0.2, max=1, jitter=0)
    assert weather.breaker == BreakerSettings(failures=2, reset_after=60)
    assert news.breaker == BreakerSettings(failures=2, reset_after=7)


async def test_header_names_from_the_environment_get_their_hyphens(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with upstream(echo) as weather:
        root = site_project(make_project, {"services": services(weather={"base_url": weather.url})})
        monkeypatch.setenv("AIOSITE_HTTP__SERVICES__WEATHER__HEADERS__X_API_KEY", "k-env")
        async with site_client(root) as client:
            resp = await service(client.app, "weather").get("/today")
    assert resp.json()["api_key"] == "k-env"
    (request,) = weather.requests
    assert "x-api-key" in [name.lower() for name in request.headers]
    assert "x_api_key" not in [name.lower() for name in request.headers]


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        (
            "http:\n  services:\n    weather:\n      base_url: ftp://files.example.com\n",
            "config/test.yaml: http.services.weather.base_url: 'ftp://files.example.com' is "
            "not an http(s) URL",
        ),
        (
            "http:\n  services:\n    weather:\n      base_url: https://x.example.com/?k=1\n",
            "http.services.weather.base_url: 'https://x.example.com/?k=1': a base URL has no query",
        ),
        (
            "http:\n  services:\n    weather: {}\n",
            "config/test.yaml: http.services.weather.base_url: missing",
        ),
        (
            "http:\n  services:\n    weather:\n      base_url: http://h\n      retires: 1\n",
            "config/test.yaml: http.services.weather.retires: unknown setting",
        ),
        (
            "http:\n  timeout:\n    total: 0\n",
            "config/test.yaml: http.timeout.total: Input should be greater than 0",
        ),
        (
            "http:\n  circuit_breaker:\n    failures: 0\n",
            "config/test.yaml: http.circuit_breaker.failures: Input should be greater than or "
            "equal to 1",
        ),
        (
            "http:\n  outbound: nowhere\n",
            "config/test.yaml: http.outbound: Input should be 'any' or 'loopback'",
        ),
    ],
)
def test_a_bad_setting_names_file_and_key(
    make_project: ProjectFactory, yaml_text: str, expected: str
) -> None:
    root = make_project(env_yaml={"test": yaml_text})
    with pytest.raises(ImproperlyConfigured) as caught:
        load_settings(root, "test")
    assert expected in str(caught.value)


def test_deploy_check_warns_of_a_loopback_only_site() -> None:
    problems = list(HttpSettings(outbound="loopback").deploy_problems())
    assert problems == [
        (
            "warning",
            "http.outbound: 'loopback' blocks every call to a real upstream; set it in "
            "config/test.yaml only",
        )
    ]
    assert list(HttpSettings().deploy_problems()) == []


def test_a_site_imports_retry_and_breaker_libraries_only_when_it_has_services(
    make_project: ProjectFactory,
) -> None:
    plain = make_project()
    modules = imported(f"from aiosite import load_site\nload_site({str(plain)!r}, 'production')")
    assert loaded(modules, ("stamina", "tenacity", "purgatory")) == []
    # A site with services imports them when it starts, not during its first call.
    root = site_project(make_project, {"services": services(weather={"base_url": "http://h"})})
    modules = imported(
        "import asyncio\n"
        "from aiohttp import web\n"
        "from aiosite import load_site\n"
        f"site = load_site({str(root)!r}, 'test')\n"
        "import sys\n"
        "assert 'stamina' not in sys.modules and 'purgatory' not in sys.modules\n"
        "async def main():\n"
        "    runner = web.AppRunner(site)\n"
        "    await runner.setup()\n"
        "    await runner.cleanup()\n"
        "asyncio.run(main())\n"
    )
    assert loaded(modules, ("stamina", "purgatory")) == ["purgatory", "stamina"]
