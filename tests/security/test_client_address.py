"""client_address and is_secure: the connection's own, or what a trusted proxy saw.

A proxy is trusted with ``security.trust_proxy_headers`` on and the peer in
``security.trusted_proxies`` (loopback by default; a unix socket's peer always).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict

from aiosite import load_site
from aiosite.exceptions import ImproperlyConfigured
from tests.conftest import ProjectFactory, site_client

ROUTES = """\
from aiohttp import web

from aiosite import Routes, client_address, is_secure

routes = Routes()


@routes.get("/client", name="client")
async def client(request: web.Request) -> web.Response:
    return web.Response(text=str(client_address(request)))


@routes.get("/secure", name="secure")
async def secure(request: web.Request) -> web.Response:
    return web.Response(text=f"secure={is_secure(request)}")
"""

FORWARDED = {"X-Forwarded-For": "1.1.1.1, 9.9.9.9"}


async def test_the_forwarded_address_is_ignored_unless_the_proxy_is_trusted(
    make_project: ProjectFactory,
) -> None:
    root = make_project({"PKG/home/routes.py": ROUTES})
    async with site_client(root) as client:
        assert await (await client.get("/client", headers=FORWARDED)).text() == "127.0.0.1"


async def test_a_trusted_proxy_gives_the_address_it_saw(make_project: ProjectFactory) -> None:
    trusted = "security:\n  trust_proxy_headers: true\n"
    root = make_project({"PKG/home/routes.py": ROUTES}, env_yaml={"test": trusted})
    async with site_client(root) as client:
        # The last entry is the proxy's own addition; those before it are the client's claims.
        assert await (await client.get("/client", headers=FORWARDED)).text() == "9.9.9.9"
        assert await (await client.get("/client")).text() == "127.0.0.1"


async def test_a_proxy_header_line_of_its_own_wins(make_project: ProjectFactory) -> None:
    trusted = "security:\n  trust_proxy_headers: true\n"
    root = make_project({"PKG/home/routes.py": ROUTES}, env_yaml={"test": trusted})
    # The client's claim in one line, the proxy's addition in a line of its own.
    headers = CIMultiDict([("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-For", "9.9.9.9")])
    async with site_client(root) as client:
        assert await (await client.get("/client", headers=headers)).text() == "9.9.9.9"


# The test client connects from 127.0.0.1: a proxy elsewhere is trusted, not it.
ELSEWHERE = """\
security:
  trust_proxy_headers: true
  trusted_proxies: [10.0.0.0/8, "fd00::/8"]
"""
HTTPS = {"X-Forwarded-Proto": "https", **FORWARDED}


async def test_an_untrusted_peer_s_forwarded_headers_are_ignored(
    make_project: ProjectFactory,
) -> None:
    root = make_project({"PKG/home/routes.py": ROUTES}, env_yaml={"test": ELSEWHERE})
    async with site_client(root) as client:
        assert await (await client.get("/client", headers=FORWARDED)).text() == "127.0.0.1"
        resp = await client.get("/secure", headers=HTTPS)
        assert await resp.text() == "secure=False"
        # Nor does the peer get HSTS by claiming HTTPS.
        assert "Strict-Transport-Security" not in resp.headers


async def test_a_loopback_proxy_is_trusted_by_default(make_project: ProjectFactory) -> None:
    trusted = "security:\n  trust_proxy_headers: true\n"
    root = make_project({"PKG/home/routes.py": ROUTES}, env_yaml={"test": trusted})
    async with site_client(root) as client:
        resp = await client.get("/secure", headers=HTTPS)
        assert await resp.text() == "secure=True"
        assert "max-age=" in resp.headers["Strict-Transport-Security"]


async def test_a_unix_socket_peer_is_trusted(make_project: ProjectFactory) -> None:
    # nginx on the same machine may reach the site through a unix socket: no address to
    # check, and only local processes can connect.
    root = make_project({"PKG/home/routes.py": ROUTES}, env_yaml={"test": ELSEWHERE})
    runner = web.AppRunner(load_site(root, "test"))
    await runner.setup()
    with tempfile.TemporaryDirectory() as directory:
        path = str(Path(directory) / "site.sock")
        await web.UnixSite(runner, path).start()
        try:
            connector = aiohttp.UnixConnector(path=path)
            async with aiohttp.ClientSession(connector=connector) as session:
                url = "http://localhost"
                async with session.get(f"{url}/client", headers=FORWARDED) as resp:
                    assert await resp.text() == "9.9.9.9"
                async with session.get(f"{url}/secure", headers=HTTPS) as resp:
                    assert await resp.text() == "secure=True"
        finally:
            await runner.cleanup()


def test_trusted_proxies_must_be_networks(make_project: ProjectFactory) -> None:
    bad = "security:\n  trusted_proxies: [10.0.0.1/8]\n"
    root = make_project({"PKG/home/routes.py": ROUTES}, env_yaml={"test": bad})
    with pytest.raises(ImproperlyConfigured) as raised:
        load_site(root, "test")
    assert "security.trusted_proxies" in str(raised.value)
    assert "'10.0.0.1/8' is not a network" in str(raised.value)
