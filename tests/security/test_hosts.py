"""Allowed hosts: requests for a host the site does not serve get 400."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from aiosite import ImproperlyConfigured, load_settings
from tests.conftest import ProjectFactory, site_client
from tests.security.support import FILES

HOSTS_YAML = """\
security:
  allowed_hosts: ["example.com", ".shop.test", "[::1]", "127.0.0.1"]
"""


# An error page like a project's base template: it reaches for the session's CSRF token,
# which a request refused before its session was attached does not have.
ERROR_PAGE = """\
<meta name="csrf-token" content="{{ csrf_token() }}">
<h1>{{ status }}</h1><p>{{ message }}</p>
"""


@pytest.fixture
def project(make_project: ProjectFactory) -> Path:
    files = {**FILES, "PKG/templates/error.html": ERROR_PAGE}
    return make_project(files, env_yaml={"test": HOSTS_YAML})


async def test_allowed_hosts_are_served_with_or_without_a_port(project: Path) -> None:
    async with site_client(project) as client:
        for host in (
            "example.com",
            "EXAMPLE.com:8080",
            "example.com.",
            "shop.test",
            "www.shop.test",
            "a.b.shop.test:443",
            "[::1]",
            "[::1]:8000",
        ):
            resp = await client.get("/plain", headers={"Host": host})
            assert resp.status == 200, host
            assert await resp.text() == "Hello, World!"


@pytest.fixture
def debug_project(make_project: ProjectFactory) -> Path:
    files = {**FILES, "PKG/templates/error.html": ERROR_PAGE}
    return make_project(files, env_yaml={"test": "debug: true\n" + HOSTS_YAML})


async def test_other_hosts_get_400_saying_only_that_the_host_is_not_served(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with site_client(project) as client:
        for host in ("evil.com", "www.example.com", "notshop.test", "shop.test.evil.com", "[::2]"):
            resp = await client.get("/plain", headers={"Host": host})
            assert resp.status == 400, host
            body = await resp.text()
            assert "<h1>400</h1>" in body
            assert "this site does not serve the requested host" in body
            # Neither what the client sent nor how the site is configured.
            assert host not in body
            assert "allowed_hosts" not in body
            assert resp.content_type == "text/html"
        # The refusal is an ordinary error page: a JSON client gets JSON.
        resp = await client.get("/", headers={"Host": "evil.com", "Accept": "application/json"})
        assert resp.status == 400
        message = (await resp.json())["error"]["message"]
        assert message == "Bad Request: this site does not serve the requested host."
    # The log keeps the detail, once per host.
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    evil = [w for w in warnings if "'evil.com'" in w]
    assert len(evil) == 1
    assert "security.allowed_hosts" in evil[0]


async def test_in_debug_mode_the_400_names_the_host_and_the_setting(debug_project: Path) -> None:
    async with site_client(debug_project) as client:
        resp = await client.get("/plain", headers={"Host": "evil.com"})
        assert resp.status == 400
        body = await resp.text()
        assert "evil.com" in body
        assert "security.allowed_hosts" in body
        resp = await client.get("/plain", headers={"Host": "bad host!"})
        assert resp.status == 400
        assert "is not a valid host name" in await resp.text()


async def test_an_invalid_host_header_is_not_repeated_in_production(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with site_client(project) as client:
        resp = await client.get("/", headers={"Host": "<script>x</script>"})
        assert resp.status == 400
        body = await resp.text()
        assert "script" not in body
        assert "this site does not serve the requested host" in body
    assert any(
        "invalid Host header '<script>x</script>'" in r.getMessage()
        for r in caplog.records
        if r.levelname == "WARNING"
    )


async def test_the_host_is_escaped_on_the_debug_error_page(debug_project: Path) -> None:
    async with site_client(debug_project) as client:
        resp = await client.get("/", headers={"Host": "<script>x</script>"})
        assert resp.status == 400
        body = await resp.text()
        assert "<script>x" not in body
        assert "&lt;script&gt;x" in body
        assert "not a valid host name" in body


async def test_unknown_hosts_are_refused_before_any_route(project: Path) -> None:
    async with site_client(project) as client:
        for path in ("/nowhere", "/static/home/site.css", "/submit"):
            resp = await client.post(path, headers={"Host": "evil.com"})
            assert resp.status == 400, path
        # Headers of the security battery are on the refusal too.
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_a_request_without_host_header_gets_400(project: Path) -> None:
    async with site_client(project) as client:
        reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
        writer.write(b"GET /plain HTTP/1.0\r\n\r\n")
        await writer.drain()
        answer = await reader.read()
        writer.close()
        await writer.wait_closed()
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split()[1] == b"400"
    assert b"no Host header" in rest


async def test_star_allows_any_host(make_project: ProjectFactory) -> None:
    root = make_project(FILES, env_yaml={"test": 'security:\n  allowed_hosts: ["*"]\n'})
    async with site_client(root) as client:
        resp = await client.get("/plain", headers={"Host": "anything.example:1234"})
        assert resp.status == 200


async def test_default_hosts_are_the_local_ones(make_project: ProjectFactory) -> None:
    root = make_project(FILES)
    async with site_client(root) as client:
        for host in ("localhost:8000", "127.0.0.1", "[::1]:8080"):
            assert (await client.get("/plain", headers={"Host": host})).status == 200, host
        assert (await client.get("/plain", headers={"Host": "example.com"})).status == 400


def test_an_entry_with_a_port_is_a_settings_error(make_project: ProjectFactory) -> None:
    yaml = 'security:\n  allowed_hosts: ["example.com:8000"]\n'
    root = make_project(FILES, env_yaml={"test": yaml})
    with pytest.raises(ImproperlyConfigured) as caught:
        load_settings(root, "test")
    message = str(caught.value)
    assert "config/test.yaml: security.allowed_hosts" in message
    assert "without scheme or port" in message
