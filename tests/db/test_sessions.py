"""Request-scoped sessions through HTTP: lazy, committed, rolled back, closed; 409 and 503."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import event, text

from aiosite import ImproperlyConfigured, database_of, load_site
from aiosite.apps import APPS
from aiosite.db.models import site_metadata
from aiosite.testing import csrf_headers
from tests.conftest import ProjectFactory, TestDatabase, site_with_tables
from tests.db.proxy import TcpProxy

MODELS = """
    from sqlalchemy import String
    from sqlalchemy.orm import Mapped, mapped_column

    from aiosite import Model, Timestamped


    class Note(Timestamped, Model):
        __tablename__ = "PKG_note"

        id: Mapped[int] = mapped_column(primary_key=True)
        text: Mapped[str] = mapped_column(String(100), unique=True)
"""

ROUTES = """
    import asyncio

    from aiohttp import web
    from sqlalchemy import func, select

    from aiosite import Routes, db_session, json_response

    from .models import Note

    routes = Routes()


    @routes.get("/plain", name="plain")
    async def plain(request: web.Request) -> web.Response:
        return web.Response(text="no database here")


    @routes.get("/count", name="count")
    async def count(request: web.Request) -> web.Response:
        total = await db_session(request).scalar(select(func.count()).select_from(Note))
        return json_response({"count": total})


    @routes.post("/add", name="add")
    async def add(request: web.Request) -> web.Response:
        session = db_session(request)
        session.add(Note(text=request.query["text"]))
        await session.flush()  # the row is written; only the transaction's end decides
        outcome = request.query.get("then")
        if outcome == "fail":
            raise RuntimeError("failed after writing")
        if outcome == "redirect":
            raise web.HTTPSeeOther("/notes/count")
        if outcome == "reject":
            raise web.HTTPBadRequest(text="rejected after writing")
        return json_response({"ok": True}, status=201)


    @routes.get("/hold", name="hold")
    async def hold(request: web.Request) -> web.Response:
        # Keeps its pooled connection while it sleeps.
        await db_session(request).execute(select(func.count()).select_from(Note))
        await asyncio.sleep(float(request.query["seconds"]))
        return web.Response(text="held")


    @routes.post("/add-unflushed", name="add_unflushed")
    async def add_unflushed(request: web.Request) -> web.Response:
        # The INSERT happens at commit, after the handler returned.
        db_session(request).add(Note(text=request.query["text"]))
        return json_response({"ok": True}, status=201)
"""

FILES = {
    "PKG/notes/__init__.py": "",
    "PKG/notes/models.py": MODELS,
    "PKG/notes/routes.py": ROUTES,
}


async def count_rows(client: TestClient[web.Request, web.Application]) -> int:
    resp = await client.get("/notes/count")
    assert resp.status == 200
    body = await resp.json()
    return int(body["count"])


@pytest.fixture
def project(make_project: ProjectFactory, database: TestDatabase) -> Path:
    return make_project(FILES, apps=["home", "notes"])


async def test_a_route_without_the_database_checks_out_no_connection(project: Path) -> None:
    async with site_with_tables(project) as client:
        checkouts: list[object] = []
        engine = database_of(client.app).engine.sync_engine
        event.listen(engine, "checkout", lambda *args: checkouts.append(args))
        for _ in range(3):
            resp = await client.get("/notes/plain")
            assert resp.status == 200
        assert checkouts == []
        await count_rows(client)
        assert len(checkouts) == 1
        # The session was closed: its connection went back to the pool.
        assert engine.pool.checkedout() == 0


async def test_a_handler_that_returns_commits(project: Path) -> None:
    async with site_with_tables(project) as client:
        resp = await client.post(
            "/notes/add", params={"text": "kept"}, headers=await csrf_headers(client)
        )
        assert resp.status == 201
        resp = await client.post(
            "/notes/add-unflushed", params={"text": "also kept"}, headers=await csrf_headers(client)
        )
        assert resp.status == 201
        assert await count_rows(client) == 2


async def test_a_handler_that_writes_then_raises_leaves_no_row(project: Path) -> None:
    async with site_with_tables(project) as client:
        resp = await client.post(
            "/notes/add",
            params={"text": "lost", "then": "fail"},
            headers=await csrf_headers(client),
        )
        assert resp.status == 500
        assert await count_rows(client) == 0
        assert database_of(client.app).engine.sync_engine.pool.checkedout() == 0


async def test_an_http_error_rolls_back_and_a_redirect_commits(project: Path) -> None:
    async with site_with_tables(project) as client:
        resp = await client.post(
            "/notes/add",
            params={"text": "no", "then": "reject"},
            headers=await csrf_headers(client),
        )
        assert resp.status == 400
        assert "rejected after writing" in await resp.text()
        assert await count_rows(client) == 0
        resp = await client.post(
            "/notes/add",
            params={"text": "yes", "then": "redirect"},
            allow_redirects=False,
            headers=await csrf_headers(client),
        )
        assert resp.status == 303
        assert await count_rows(client) == 1


async def test_an_unhandled_unique_violation_is_a_409_not_a_500(project: Path) -> None:
    async with site_with_tables(project) as client:
        assert (
            await client.post(
                "/notes/add", params={"text": "twice"}, headers=await csrf_headers(client)
            )
        ).status == 201
        resp = await client.post(
            "/notes/add", params={"text": "twice"}, headers=await csrf_headers(client)
        )
        assert resp.status == 409
        assert "conflicts with existing data" in await resp.text()
        # Raised at commit, after the handler returned: the same answer.
        resp = await client.post(
            "/notes/add-unflushed", params={"text": "twice"}, headers=await csrf_headers(client)
        )
        assert resp.status == 409
        assert await count_rows(client) == 1


async def test_session_scope_outside_requests(
    make_project: ProjectFactory, database: TestDatabase
) -> None:
    site_py = """
        from aiohttp import web
        from aiosite import session_scope
        from PKG.notes.models import Note

        async def seed(app: web.Application) -> None:
            async with session_scope(app) as session:
                session.add(Note(text="from startup"))
            try:
                async with session_scope(app) as session:
                    session.add(Note(text="rolled back"))
                    raise LookupError
            except LookupError:
                pass

        def setup(app: web.Application, settings: object, registry: object) -> None:
            app.on_startup.append(seed)
    """
    root = make_project({**FILES, "PKG/site.py": site_py}, apps=["home", "notes"])
    prepared = load_site(root, "test")
    # The tables must exist before the startup hook runs.
    db = database.open()
    try:
        async with db.engine.begin() as connection:
            await connection.run_sync(site_metadata(prepared[APPS]).create_all)
    finally:
        await db.dispose()
    async with TestClient(TestServer(prepared)) as client:
        assert await count_rows(client) == 1


async def test_an_error_page_that_queries_gives_its_connection_back(
    make_project: ProjectFactory, database: TestDatabase
) -> None:
    # The error page renders after the request's session has ended; a context
    # processor that queries opens it again.
    site_py = """
        from sqlalchemy import func, select
        from aiosite import db_session
        from PKG.notes.models import Note

        async def note_count(request):
            count = select(func.count()).select_from(Note)
            return {"notes": await db_session(request).scalar(count)}

        context_processors = [note_count]
    """
    files = {**FILES, "PKG/site.py": site_py, "PKG/templates/404.html": "{{ notes }} notes"}
    async with site_with_tables(make_project(files, apps=["home", "notes"])) as client:
        pool = database_of(client.app).engine.sync_engine.pool
        for _ in range(3):
            resp = await client.get("/no/such/page")
            assert resp.status == 404
            assert await resp.text() == "0 notes"
        assert pool.checkedout() == 0


async def test_a_request_that_waits_too_long_for_a_connection_gets_503(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIOSITE_DATABASE__POOL_SIZE", "1")
    monkeypatch.setenv("AIOSITE_DATABASE__MAX_OVERFLOW", "0")
    monkeypatch.setenv("AIOSITE_DATABASE__POOL_TIMEOUT", "0.2")
    async with site_with_tables(project) as client:
        holder = asyncio.ensure_future(client.get("/notes/hold", params={"seconds": "1.5"}))
        await asyncio.sleep(0.5)  # the holder has the only connection by now
        resp = await client.get("/notes/count")
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "5"
        assert (await holder).status == 200
        assert await count_rows(client) == 0  # the pool serves again


async def test_an_unreachable_server_stops_the_start_naming_the_setting(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIOSITE_DATABASE__URL", "postgresql://root:s3cret@127.0.0.1:1/test")
    root = make_project()
    server = TestServer(load_site(root, "test"))
    with pytest.raises(ImproperlyConfigured) as info:
        await server.start_server()
    await server.close()
    message = str(info.value)
    assert message.startswith(
        "database.url: cannot connect to postgresql+asyncpg://root:***@127.0.0.1:1/test:"
    )
    assert "ConnectionRefusedError" in message
    assert "s3cret" not in message


async def test_a_sqlite_file_that_cannot_be_made_stops_the_start(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIOSITE_DATABASE__URL", "sqlite:////proc/no-such-dir/db.sqlite3")
    server = TestServer(load_site(make_project(), "test"))
    with pytest.raises(ImproperlyConfigured) as info:
        await server.start_server()
    await server.close()
    assert str(info.value).startswith(
        "database.url: cannot connect to sqlite+aiosqlite:////proc/no-such-dir/db.sqlite3:"
    )


@pytest.mark.db_backends("postgresql")
async def test_a_database_that_goes_away_gives_503_and_the_site_recovers(
    project: Path, database: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = TcpProxy(("127.0.0.1", 5432))
    await proxy.start()
    url = database.url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    monkeypatch.setenv("AIOSITE_DATABASE__URL", url)
    async with site_with_tables(project) as client:
        assert await count_rows(client) == 0
        await proxy.stop()
        # A pooled connection dies mid-request, then new connections are refused.
        for _ in range(2):
            resp = await client.get("/notes/count", headers={"Accept": "text/html"})
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "5"
            assert "The database is unavailable" in await resp.text()
        resp = await client.get("/notes/plain")
        assert resp.status == 200
        await proxy.start()
        assert await count_rows(client) == 0
        assert (
            await client.post(
                "/notes/add", params={"text": "back"}, headers=await csrf_headers(client)
            )
        ).status == 201
        assert await count_rows(client) == 1
    await proxy.stop()


async def test_sqlite_connections_enforce_foreign_keys_and_use_wal(
    project: Path, database: TestDatabase
) -> None:
    async with (
        site_with_tables(project) as client,
        database_of(client.app).engine.connect() as connection,
    ):
        if database.backend == "sqlite":
            assert (await connection.execute(text("PRAGMA foreign_keys"))).scalar() == 1
            mode = (await connection.execute(text("PRAGMA journal_mode"))).scalar()
            assert mode == "wal"
        else:
            path = (await connection.execute(text("SHOW search_path"))).scalar()
            assert path == database.schema_name
