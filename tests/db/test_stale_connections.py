"""Pooled connections that died while idle (the database went away and came back): the
first requests afterwards, through the ORM, the fast path and /readyz, get new ones."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import text

from aiosite import database_of
from tests.conftest import ProjectFactory, TestDatabase, site_client
from tests.db.proxy import TcpProxy

pytestmark = pytest.mark.db_backends("postgresql")

Client = TestClient[web.Request, web.Application]

ROUTES = """
    from aiohttp import web
    from sqlalchemy import literal_column, select

    from aiosite import Prepared, Routes, db_session, fast_path, json_response

    routes = Routes()
    PING = Prepared(select(literal_column("1").label("one")))


    @routes.get("/orm", name="orm")
    async def orm(request: web.Request) -> web.Response:
        return json_response({"one": await db_session(request).scalar(select(literal_column("1")))})


    @routes.get("/fast", name="fast")
    async def fast(request: web.Request) -> web.Response:
        return json_response({"one": await fast_path(request).fetch_value(PING)})
"""

FILES = {"PKG/probe/__init__.py": "", "PKG/probe/routes.py": ROUTES}
# Connections each pool holds when the database goes away (below database.pool_size).
WARM = 3


@pytest.fixture
def project(make_project: ProjectFactory, database: TestDatabase) -> Path:
    return make_project(FILES, apps=["home", "probe"])


@contextlib.asynccontextmanager
async def warm_site(
    project: Path, database: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Client, TcpProxy]]:
    """The site on the database through a proxy, each of its pools holding WARM idle
    connections."""
    proxy = TcpProxy()
    await proxy.start()
    monkeypatch.setenv("AIOSITE_DATABASE__URL", proxy.url(database))
    # Each probe runs the checks afresh (no reuse of the last result).
    monkeypatch.setenv("AIOSITE_HEALTH__CACHE_SECONDS", "0")
    try:
        async with site_client(project) as client:
            db = database_of(client.app)
            async with contextlib.AsyncExitStack() as held:
                for _ in range(WARM):
                    connection = await held.enter_async_context(db.engine.connect())
                    await connection.execute(text("SELECT 1"))

            async def fast_use() -> None:
                async with db.fast.connection() as connection:
                    await connection._driver.fetchval("SELECT 1")
                    await asyncio.sleep(0.05)  # the others take connections of their own

            await asyncio.gather(*(fast_use() for _ in range(WARM)))
            assert await proxy.settle(2 * WARM) == 2 * WARM
            yield client, proxy
            assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        if proxy._server is not None and proxy._server.is_serving():
            await proxy.stop()


async def outage(proxy: TcpProxy) -> None:
    """Every proxied connection is cut and new ones are refused, until ``start()``."""
    await proxy.stop()
    assert await proxy.settle(0) == 0
    await asyncio.sleep(0.1)  # an outage lasts a moment; the site sees its sockets close


async def statuses(client: Client, path: str, times: int) -> list[int]:
    found = []
    for _ in range(times):
        resp = await client.get(path)
        await resp.read()
        found.append(resp.status)
    return found


@pytest.mark.parametrize("first", ["/probe/orm", "/probe/fast", "/readyz"])
async def test_the_first_requests_after_an_outage_get_new_connections(
    project: Path, database: TestDatabase, monkeypatch: pytest.MonkeyPatch, first: str
) -> None:
    async with warm_site(project, database, monkeypatch) as (client, proxy):
        await outage(proxy)
        await proxy.start()
        # No request in between: each pooled connection is a dead one. (Without a check
        # at checkout, the first request fails on one, and SQLAlchemy then renews the
        # rest of its pool: hence the first request of each kind, in turn.) Requests one
        # after another take each pooled connection in turn (first in, first out).
        seen = {
            "first": await statuses(client, first, 1),
            "orm": await statuses(client, "/probe/orm", WARM + 1),
            "fast": await statuses(client, "/probe/fast", WARM + 1),
            "/readyz": await statuses(client, "/readyz", 2),
        }
        assert seen == {
            "first": [200],
            "orm": [200] * (WARM + 1),
            "fast": [200] * (WARM + 1),
            "/readyz": [200, 200],
        }
        resp = await client.get("/probe/orm")
        assert await resp.json() == {"one": 1}


async def test_dead_connections_while_the_database_is_still_down_are_503_at_once(
    project: Path, database: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with warm_site(project, database, monkeypatch) as (client, proxy):
        await outage(proxy)
        for path in ("/probe/orm", "/probe/fast"):
            started = time.monotonic()
            resp = await client.get(path)
            # A dead connection is replaced by a new one, which is refused: no hang
            # (database.connect_timeout is 5 s), and the usual answer to an outage.
            assert time.monotonic() - started < 2.0, path
            assert resp.status == 503, path
            assert resp.headers["Retry-After"] == "5"
        started = time.monotonic()
        resp = await client.get("/readyz")
        assert time.monotonic() - started < 2.0
        assert resp.status == 503
        assert (await resp.json())["checks"]["database"].startswith("failed: ")
        await proxy.start()
        assert await statuses(client, "/probe/orm", WARM + 1) == [200] * (WARM + 1)
        assert await statuses(client, "/probe/fast", WARM + 1) == [200] * (WARM + 1)
        assert await statuses(client, "/readyz", 1) == [200]
