"""client_address: the connection's address, or the one a trusted proxy saw."""

from __future__ import annotations

from multidict import CIMultiDict

from tests.conftest import ProjectFactory, site_client

ROUTES = """\
from aiohttp import web

from aiosite import Routes, client_address

routes = Routes()


@routes.get("/client", name="client")
async def client(request: web.Request) -> web.Response:
    return web.Response(text=str(client_address(request)))
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
