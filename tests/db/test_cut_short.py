"""A query cut short (timed out, cancelled) leaves its connection mid-operation: it is
closed, never rolled back and reused (asyncpg would refuse the ROLLBACK with "cannot
switch to state 15; another operation is in progress"), and the next request gets a
working connection. An error that is not the database's keeps the connection."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.conftest import ProjectFactory, TestDatabase, site_with_tables

ROUTES = """
    import asyncio

    from aiohttp import web
    from sqlalchemy import func, select

    from aiosite import Prepared, db_session, fast_path, Routes

    routes = Routes()
    PID = Prepared(select(func.pg_backend_pid().label("pid")))
    SLEEP = Prepared(select(func.pg_sleep(2)))


    @routes.get("/fast/pid", name="fast_pid")
    async def fast_pid(request: web.Request) -> web.Response:
        return web.Response(text=str(await fast_path(request).fetch_value(PID)))


    @routes.get("/fast/slow", name="fast_slow")
    async def fast_slow(request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(0.2):
                async with fast_path(request).transaction() as connection:
                    await connection.fetch_value(PID)
                    await connection.fetch_value(SLEEP)
        except TimeoutError:
            raise web.HTTPGatewayTimeout(text="too slow") from None
        return web.Response(text="never")


    @routes.get("/orm/pid", name="orm_pid")
    async def orm_pid(request: web.Request) -> web.Response:
        found = await db_session(request).scalar(select(func.pg_backend_pid()))
        return web.Response(text=str(found))


    async def upstream_fails(kind: str) -> None:
        # What an HTTP call to another service raises: nothing of the database's.
        if kind == "timeout":
            async with asyncio.timeout(0.01):
                await asyncio.sleep(1)
        raise ConnectionResetError("the upstream reset the connection")


    @routes.get("/fast/upstream", name="fast_upstream")
    async def fast_upstream(request: web.Request) -> web.Response:
        async with fast_path(request).transaction() as connection:
            await connection.fetch_value(PID)
            await upstream_fails(request.query["error"])
        return web.Response(text="never")


    @routes.get("/orm/upstream", name="orm_upstream")
    async def orm_upstream(request: web.Request) -> web.Response:
        await db_session(request).scalar(select(func.pg_backend_pid()))
        await upstream_fails(request.query["error"])
        return web.Response(text="never")


    @routes.get("/orm/slow", name="orm_slow")
    async def orm_slow(request: web.Request) -> web.Response:
        async with asyncio.timeout(0.2):
            await db_session(request).execute(select(func.pg_sleep(2)))
        return web.Response(text="never")
"""


@pytest.fixture
def project(
    make_project: ProjectFactory, database: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> Path:
    # One connection per pool: a reused connection would show the same backend pid.
    monkeypatch.setenv("AIOSITE_DATABASE__POOL_SIZE", "1")
    monkeypatch.setenv("AIOSITE_DATABASE__MAX_OVERFLOW", "0")
    return make_project({"PKG/q/__init__.py": "", "PKG/q/routes.py": ROUTES}, apps=["q"])


async def pid(client: TestClient[web.Request, web.Application], path: str) -> int:
    resp = await client.get(path)
    assert resp.status == 200, await resp.text()
    return int(await resp.text())


@pytest.mark.db_backends("postgresql")
async def test_a_fast_path_transaction_cut_short_closes_its_connection(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with site_with_tables(project) as client:
        before = await pid(client, "/q/fast/pid")
        assert await pid(client, "/q/fast/pid") == before  # pooled: the same connection
        resp = await client.get("/q/fast/slow", headers={"Accept": "application/json"})
        # The block's own error, not one from a ROLLBACK sent after it.
        assert resp.status == 504
        assert (await resp.json())["error"]["message"] == "too slow"
        after = await pid(client, "/q/fast/pid")
        assert after != before
        assert await pid(client, "/q/fast/pid") == after
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.db_backends("postgresql")
async def test_a_request_session_cut_short_closes_its_connection(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with site_with_tables(project) as client:
        before = await pid(client, "/q/orm/pid")
        assert await pid(client, "/q/orm/pid") == before
        assert (await client.get("/q/orm/slow")).status == 500  # an unhandled TimeoutError
        after = await pid(client, "/q/orm/pid")
        assert after != before
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ["Unhandled TimeoutError in GET /q/orm/slow"]


@pytest.mark.db_backends("postgresql")
async def test_an_upstream_timeout_or_reset_keeps_the_database_connection(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # During an outage of another service every request fails this way: closing its
    # database connection each time would churn connections to PostgreSQL.
    async with site_with_tables(project) as client:
        for kind in ("orm", "fast"):
            before = await pid(client, f"/q/{kind}/pid")
            for error in ("timeout", "reset"):
                resp = await client.get(f"/q/{kind}/upstream", params={"error": error})
                assert resp.status == 500
            assert await pid(client, f"/q/{kind}/pid") == before
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        f"Unhandled {name} in GET /q/{kind}/upstream"
        for kind in ("orm", "fast")
        for name in ("TimeoutError", "ConnectionResetError")
    ]
