"""/healthz and /readyz over HTTP: every readiness check a battery registers, failing for
real (a database behind a proxy taken down, a Redis port nobody listens on, migrations
not applied), and one an app registers."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from aiosite.db.migrations import migrate
from aiosite.keys import SETTINGS
from tests.conftest import POSTGRESQL_URL, ProjectFactory, require_service, site_client
from tests.db.proxy import TcpProxy

FOREIGN_HOST = {"Host": "10.9.8.7"}
# For the tests that change what a check finds between two probes: every probe runs the
# checks (test_probes_share_a_run_and_reuse_its_results covers the reuse).
NO_REUSE = {"test": "health:\n  cache_seconds: 0\n"}

MIGRATION = """\
revision = "a1b2c3d4e5f6"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
"""
ENV_PY = "from aiosite.db.migrations import run_migrations\n\nrun_migrations()\n"

# An app's own check: not ready while the file "search-down" exists in the project.
SEARCH_APP = """\
from pathlib import Path

from aiosite import App, probes_of


async def search_answers() -> None:
    if (Path(__file__).parents[2] / "search-down").exists():
        raise ConnectionError("search engine at 10.0.0.9:9200 refused the connection")


def setup(app, settings, registry):
    probes_of(app).add_readiness_check("search", search_answers, timeout=0.5)


app = App("search", setup=setup)
"""


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_healthz_answers_ok_to_any_host(make_project: ProjectFactory) -> None:
    async with site_client(make_project()) as client:
        response = await client.get("/healthz", headers=FOREIGN_HOST)
        assert response.status == 200
        assert await response.text() == "ok"
        assert response.headers["Cache-Control"] == "no-store"
        assert "Set-Cookie" not in response.headers
        # The other routes still refuse a host the site does not serve.
        assert (await client.get("/", headers=FOREIGN_HOST)).status == 400
        assert (await client.get("/hello.json", headers=FOREIGN_HOST)).status == 400


async def test_readyz_is_ready_with_each_check_named(make_project: ProjectFactory) -> None:
    async with site_client(make_project()) as client:
        response = await client.get("/readyz", headers=FOREIGN_HOST)
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"
        assert await response.json() == {"status": "ready", "checks": {"database": "ok"}}


async def test_paths_come_from_the_settings(make_project: ProjectFactory) -> None:
    root = make_project(
        env_yaml={"test": "health:\n  healthz_path: /live\n  readyz_path: /ready\n"}
    )
    async with site_client(root) as client:
        assert (await client.get("/live")).status == 200
        assert (await client.get("/ready")).status == 200
        assert (await client.get("/healthz")).status == 404


async def test_health_disabled_adds_no_routes(make_project: ProjectFactory) -> None:
    root = make_project(env_yaml={"test": "health:\n  enabled: false\n"})
    async with site_client(root) as client:
        assert (await client.get("/healthz")).status == 404
        assert (await client.get("/readyz")).status == 404


@pytest.mark.usefixtures("database")
@pytest.mark.db_backends("postgresql")
async def test_readyz_fails_while_the_database_is_unreachable(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    proxy = TcpProxy()
    await proxy.start()
    monkeypatch.setenv("AIOSITE_DATABASE__URL", POSTGRESQL_URL.replace("5432", str(proxy.port)))
    root = make_project(env_yaml=NO_REUSE)
    try:
        async with site_client(root) as client:
            assert (await client.get("/readyz")).status == 200
            await proxy.stop()
            caplog.set_level(logging.INFO, logger="aiosite.health")
            for _ in range(3):
                response = await client.get("/readyz", headers=FOREIGN_HOST)
                assert response.status == 503
                assert response.headers["Retry-After"] == "5"
                body = await response.json()
                assert body["status"] == "unavailable"
                assert body["checks"]["database"].startswith("failed: ")
                assert "\n" not in body["checks"]["database"]
            failures = [r for r in caplog.records if "'database' failed" in r.getMessage()]
            assert len(failures) == 1  # once per transition, not per probe
            await proxy.start()
            assert (await client.get("/readyz")).status == 200
            assert any("'database' passes again" in r.getMessage() for r in caplog.records)
    finally:
        if proxy._server is not None and proxy._server.is_serving():
            await proxy.stop()


async def test_readyz_fails_until_the_migrations_are_applied(
    make_project: ProjectFactory,
) -> None:
    root = make_project(
        {
            "migrations/env.py": ENV_PY,
            "migrations/versions/2026_01_01_0000-a1b2c3d4e5f6_start.py": MIGRATION,
        },
        env_yaml=NO_REUSE,
    )
    async with site_client(root) as client:
        response = await client.get("/readyz")
        assert response.status == 503
        checks = (await response.json())["checks"]
        assert checks["database"] == "ok"
        assert checks["migrations"] == (
            "failed: NotReady: the database has no migration applied, the migrations' head "
            "is a1b2c3d4e5f6; run `aiosite db migrate`"
        )
        migrate(client.app[SETTINGS])
        response = await client.get("/readyz")
        assert response.status == 200
        assert await response.json() == {
            "status": "ready",
            "checks": {"database": "ok", "migrations": "ok"},
        }


async def test_readyz_fails_while_redis_is_unreachable(make_project: ProjectFactory) -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    root = make_project(
        env_yaml={
            "test": f"session:\n  backend: redis\n  redis_url: {url}\n"
            "redis:\n  connect_timeout: 0.5\n"
        }
    )
    async with site_client(root) as client:
        response = await client.get("/readyz")
        assert response.status == 503
        checks = (await response.json())["checks"]
        assert checks["database"] == "ok"
        assert checks["redis"].startswith("failed: ConnectionError")


async def test_one_redis_check_per_server(make_project: ProjectFactory) -> None:
    require_service("Redis", "127.0.0.1", 6379)
    same = "session:\n  backend: redis\nchannels:\n  backend: redis\n"
    async with site_client(make_project(env_yaml={"test": same})) as client:
        response = await client.get("/readyz")
        assert await response.json() == {
            "status": "ready",
            "checks": {"database": "ok", "redis": "ok"},
        }
    other = same + "  url: redis://127.0.0.1:6379/1\n"
    async with site_client(make_project(env_yaml={"test": other})) as client:
        response = await client.get("/readyz")
        assert (await response.json())["checks"] == {
            "database": "ok",
            "redis": "ok",
            "redis:broadcast": "ok",
        }


async def test_an_app_registers_its_own_check(make_project: ProjectFactory) -> None:
    root = make_project(
        {"PKG/search/__init__.py": SEARCH_APP}, apps=["home", "search"], env_yaml=NO_REUSE
    )
    async with site_client(root) as client:
        response = await client.get("/readyz")
        assert (await response.json())["checks"] == {"database": "ok", "search": "ok"}
        (root / "search-down").touch()
        response = await client.get("/readyz")
        assert response.status == 503
        assert (await response.json())["checks"]["search"] == (
            "failed: ConnectionError: search engine at 10.0.0.9:9200 refused the connection"
        )


async def test_a_check_that_hangs_fails_at_its_timeout(make_project: ProjectFactory) -> None:
    hanging = SEARCH_APP.replace(
        "async def search_answers() -> None:\n",
        "async def search_answers() -> None:\n    import asyncio\n    await asyncio.sleep(60)\n",
    )
    root = make_project({"PKG/search/__init__.py": hanging}, apps=["home", "search"])
    async with site_client(root) as client:
        response = await client.get("/readyz")
        assert response.status == 503
        checks = (await response.json())["checks"]
        assert checks == {"database": "ok", "search": "failed: no answer within 0.5 s"}


# A project middleware: the core then runs as the outermost middleware, every request
# hook on every route, and the allowed-hosts hook itself lets the health routes through.
MIDDLEWARE_SITE = """\
from aiohttp import web


@web.middleware
async def passthrough(request, handler):
    return await handler(request)


middlewares = [passthrough]
"""


async def test_any_host_holds_when_the_core_runs_as_a_middleware(
    make_project: ProjectFactory,
) -> None:
    async with site_client(make_project({"PKG/site.py": MIDDLEWARE_SITE})) as client:
        assert (await client.get("/healthz", headers=FOREIGN_HOST)).status == 200
        assert (await client.get("/readyz", headers=FOREIGN_HOST)).status == 200
        assert (await client.get("/", headers=FOREIGN_HOST)).status == 400


# An app's check that counts its runs and takes a while (a database under load).
COUNTING_APP = """\
import asyncio

from aiohttp import web

from aiosite import App, probes_of

runs = {"count": 0}


async def slow_check() -> None:
    runs["count"] += 1
    await asyncio.sleep(0.2)


async def count(request):
    return web.json_response(runs)


def setup(app, settings, registry):
    probes_of(app).add_readiness_check("slow", slow_check)
    app.router.add_get("/runs", count)


app = App("counting", setup=setup)
"""


async def test_probes_share_a_run_and_reuse_its_results(make_project: ProjectFactory) -> None:
    root = make_project(
        {"PKG/counting/__init__.py": COUNTING_APP},
        apps=["home", "counting"],
        env_yaml={"test": "health:\n  cache_seconds: 0.5\n"},
    )
    async with site_client(root) as client:

        async def runs() -> int:
            count: int = (await (await client.get("/runs")).json())["count"]
            return count

        # A flood of probes costs one run of the checks (and of the database's).
        probes = await asyncio.gather(*(client.get("/readyz") for _ in range(20)))
        assert [probe.status for probe in probes] == [200] * 20
        assert await runs() == 1
        # Within health.cache_seconds of its end, a probe gets that run's results.
        assert (await client.get("/readyz")).status == 200
        assert await runs() == 1
        await asyncio.sleep(0.6)
        assert (await client.get("/readyz")).status == 200
        assert await runs() == 2
        # A probe whose client gives up does not cancel the run the others wait for.
        await asyncio.sleep(0.6)
        gone = asyncio.ensure_future(client.get("/readyz"))
        await asyncio.sleep(0.05)
        waiting = asyncio.ensure_future(client.get("/readyz"))
        await asyncio.sleep(0.05)
        gone.cancel()
        await asyncio.gather(gone, return_exceptions=True)
        assert (await waiting).status == 200
        assert await runs() == 3
