"""A site that starts while its database is down: outside development and test it starts
anyway (a worker replaced during an outage must not stop the server), answers 503 and
recovers by itself; a database that refuses the settings still stops the start."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from aiosite import load_site
from aiosite.exceptions import ImproperlyConfigured
from tests.conftest import ProjectFactory, TestDatabase, site_client
from tests.db.proxy import TcpProxy

pytestmark = pytest.mark.db_backends("postgresql")

ROUTES = """
    from aiohttp import web
    from sqlalchemy import literal_column, select

    from aiosite import Routes, db_session, json_response

    routes = Routes()


    @routes.get("/one", name="one")
    async def one(request: web.Request) -> web.Response:
        return json_response({"one": await db_session(request).scalar(select(literal_column("1")))})
"""

FILES = {"PKG/probe/__init__.py": "", "PKG/probe/routes.py": ROUTES}


@pytest.fixture
def project(make_project: ProjectFactory, database: TestDatabase) -> Path:
    return make_project(FILES, apps=["home", "probe"])


async def start(project: Path, env: str) -> None:
    """Start the site (it is expected to refuse)."""
    server = TestServer(load_site(project, env))
    try:
        await server.start_server()
    finally:
        await server.close()


async def test_production_site_starts_during_an_outage_and_recovers(
    project: Path,
    database: TestDatabase,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy = TcpProxy()
    await proxy.start()
    await proxy.stop()  # the port is known, and refused
    monkeypatch.setenv("AIOSITE_DATABASE__URL", proxy.url(database))
    # Each probe runs the checks afresh (no reuse of the last result).
    monkeypatch.setenv("AIOSITE_HEALTH__CACHE_SECONDS", "0")
    caplog.set_level(logging.WARNING, "aiosite.db")
    try:
        async with site_client(project, "production") as client:
            started = [r.getMessage() for r in caplog.records if r.name == "aiosite.db"]
            assert len(started) == 1, started
            assert started[0].startswith("database.url: cannot connect to postgresql+asyncpg://")
            assert started[0].endswith("; serving 503 pages until it answers; /readyz reports it")
            assert "ConnectionRefusedError" in started[0]

            resp = await client.get("/probe/one")
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "5"
            ready = await client.get("/readyz")
            assert ready.status == 503
            assert "cannot connect" in (await ready.json())["checks"]["database"]

            await proxy.start()
            resp = await client.get("/probe/one")
            assert (resp.status, await resp.json()) == (200, {"one": 1})
            assert (await client.get("/readyz")).status == 200
    finally:
        if proxy._server is not None and proxy._server.is_serving():
            await proxy.stop()


async def test_test_env_still_fails_fast_during_an_outage(
    project: Path, database: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = TcpProxy()
    await proxy.start()
    await proxy.stop()
    monkeypatch.setenv("AIOSITE_DATABASE__URL", proxy.url(database))
    # Each probe runs the checks afresh (no reuse of the last result).
    monkeypatch.setenv("AIOSITE_HEALTH__CACHE_SECONDS", "0")
    with pytest.raises(ImproperlyConfigured, match=r"database\.url: cannot connect to"):
        await start(project, "test")


@pytest.mark.parametrize(
    ("wrong", "said"),
    [
        # The shared server trusts every local user: an unknown role is its
        # authentication failure.
        ("postgresql+asyncpg://no_such_role_x:pw@127.0.0.1:5432/test", 'role "no_such_role_x"'),
        ("postgresql+asyncpg://root@127.0.0.1:5432/no_such_db_x", 'database "no_such_db_x"'),
    ],
)
async def test_a_database_that_refuses_the_settings_still_stops_the_start(
    project: Path,
    database: TestDatabase,
    monkeypatch: pytest.MonkeyPatch,
    wrong: str,
    said: str,
) -> None:
    monkeypatch.setenv("AIOSITE_DATABASE__URL", wrong)
    monkeypatch.delenv("AIOSITE_DATABASE__SCHEMA_NAME")
    with pytest.raises(ImproperlyConfigured) as raised:
        await start(project, "production")
    message = str(raised.value)
    assert message.startswith("database.url: cannot connect to postgresql+asyncpg://")
    assert said in message
    assert "\n" not in message
