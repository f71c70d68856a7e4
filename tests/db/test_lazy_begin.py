"""PostgreSQL transactions begin at the first statement that needs one: a request that
only reads sends no BEGIN and no COMMIT; a write, a row lock, a function that might
have side effects or SQL text begin the transaction first, and everything after it
commits or rolls back as a whole. Checked on the wire: asyncpg's query logger sees the
BEGIN, COMMIT and ROLLBACK the driver sends."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError

from aiosite import database_of
from tests.conftest import ProjectFactory, TestDatabase, site_with_tables

pytestmark = pytest.mark.db_backends("postgresql")

MODELS = """
    from sqlalchemy import String
    from sqlalchemy.orm import Mapped, mapped_column

    from aiosite import Model


    class Note(Model):
        __tablename__ = "lazy_note"

        id: Mapped[int] = mapped_column(primary_key=True)
        text: Mapped[str] = mapped_column(String(100))
"""

ROUTES = """
    import asyncio

    from aiohttp import web
    from sqlalchemy import func, insert, literal_column, select, text, union_all

    from aiosite import Routes, db_session, json_response

    from .models import Note

    routes = Routes()
    # Set by a test: the lock holder tells it holds the lock, and waits to be let go.
    GATES: dict[str, asyncio.Event] = {}

    READS = {
        "get": lambda s: s.get(Note, 1),
        "select": lambda s: s.scalars(select(Note).where(Note.text.startswith("n"))),
        "count": lambda s: s.scalar(select(func.count()).select_from(Note)),
        "aggregates": lambda s: s.execute(
            select(func.lower(func.max(Note.text)), func.coalesce(func.sum(Note.id), 0))
        ),
        "union": lambda s: s.execute(union_all(select(Note.id), select(Note.id))),
        "plain_text": lambda s: s.execute(select(literal_column("1")).where(text("2 > 1"))),
    }
    NEEDS_A_TRANSACTION = {
        "for_update": lambda s: s.execute(select(Note).with_for_update()),
        "get_for_update": lambda s: s.get(Note, 1, with_for_update=True),
        "advisory_lock": lambda s: s.execute(select(func.pg_advisory_xact_lock(7))),
        "text": lambda s: s.execute(text("SELECT 1")),
        "literal": lambda s: s.execute(select(literal_column("pg_backend_pid()"))),
        "insert_cte": lambda s: s.execute(
            select(
                insert(Note).values(text="from a CTE").returning(Note.id).cte("added").c.id
            )
        ),
    }


    @routes.get("/probe/{kind}", name="probe")
    async def probe(request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        session = db_session(request)
        run = {**READS, **NEEDS_A_TRANSACTION}.get(kind)
        if run is not None:
            await run(session)
        elif kind == "stream":
            result = await session.stream(select(Note))
            [row async for row in result]
        elif kind == "savepoint":
            async with session.begin_nested():
                await session.get(Note, 1)
        elif kind == "read_then_write":
            await session.get(Note, 1)
            session.add(Note(text="written"))
            await session.flush()
            if request.query.get("then") == "fail":
                raise web.HTTPBadRequest(text="refused after writing")
        return json_response({"kind": kind})


    @routes.get("/hold", name="hold")
    async def hold(request: web.Request) -> web.Response:
        await db_session(request).execute(select(Note).where(Note.id == 1).with_for_update())
        GATES["held"].set()
        await GATES["release"].wait()
        return json_response({"held": True})
"""

FILES = {"PKG/lazy/__init__.py": "", "PKG/lazy/models.py": MODELS, "PKG/lazy/routes.py": ROUTES}

Client = TestClient[web.Request, web.Application]

READS = ["get", "select", "count", "aggregates", "union", "plain_text"]
NEEDS_A_TRANSACTION = [
    "for_update",
    "get_for_update",
    "advisory_lock",
    "text",
    "literal",
    "insert_cte",
    "stream",
    "savepoint",
    "read_then_write",
]


@pytest.fixture
def project(make_project: ProjectFactory, database: TestDatabase) -> Path:
    return make_project(FILES, apps=["lazy"])


@contextmanager
def transaction_statements(client: Client) -> Iterator[list[str]]:
    """The transaction statements (BEGIN, COMMIT, ROLLBACK) the site's connections send
    while the block runs, as asyncpg logs them."""
    sent: list[str] = []

    def log(record: Any) -> None:
        statement = record.query.strip().rstrip(";").upper()
        if statement.startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            sent.append(statement.split()[0])

    def checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        proxy.driver_connection.add_query_logger(log)

    def checkin(dbapi_connection: Any, record: Any) -> None:
        if dbapi_connection is not None:
            dbapi_connection.driver_connection.remove_query_logger(log)

    engine = database_of(client.app).engine.sync_engine
    event.listen(engine, "checkout", checkout)
    event.listen(engine, "checkin", checkin)
    try:
        yield sent
    finally:
        event.remove(engine, "checkout", checkout)
        event.remove(engine, "checkin", checkin)


async def add_note(client: Client) -> None:
    async with database_of(client.app).engine.begin() as connection:
        await connection.execute(text("INSERT INTO lazy_note (text) VALUES ('note')"))


@pytest.mark.parametrize("kind", READS)
async def test_a_request_that_only_reads_sends_no_begin_or_commit(project: Path, kind: str) -> None:
    async with site_with_tables(project) as client:
        await add_note(client)
        with transaction_statements(client) as sent:
            resp = await client.get(f"/lazy/probe/{kind}")
            assert resp.status == 200, await resp.text()
        assert sent == []


@pytest.mark.parametrize("kind", NEEDS_A_TRANSACTION)
async def test_what_writes_or_locks_runs_in_a_transaction(project: Path, kind: str) -> None:
    async with site_with_tables(project) as client:
        await add_note(client)
        with transaction_statements(client) as sent:
            resp = await client.get(f"/lazy/probe/{kind}")
            assert resp.status == 200, await resp.text()
        assert sent == ["BEGIN", "COMMIT"]


async def test_a_failed_request_rolls_back_what_it_wrote_after_reading(project: Path) -> None:
    async with site_with_tables(project) as client:
        await add_note(client)
        with transaction_statements(client) as sent:
            resp = await client.get("/lazy/probe/read_then_write", params={"then": "fail"})
            assert resp.status == 400
        assert sent == ["BEGIN", "ROLLBACK"]
        async with database_of(client.app).engine.connect() as connection:
            assert await connection.scalar(text("SELECT count(*) FROM lazy_note")) == 1


async def test_a_row_lock_lasts_until_the_request_ends(
    project: Path, database: TestDatabase
) -> None:
    lock_row = text("SELECT * FROM lazy_note WHERE id = 1 FOR UPDATE NOWAIT")
    async with site_with_tables(project) as client:
        await add_note(client)
        routes = importlib.import_module(f"{project.name}.lazy.routes")
        routes.GATES.update(held=asyncio.Event(), release=asyncio.Event())
        request = asyncio.ensure_future(client.get("/lazy/hold"))
        other = database.open()
        try:
            await routes.GATES["held"].wait()
            async with other.engine.connect() as connection:
                with pytest.raises(DBAPIError) as failure:
                    await connection.execute(lock_row)
                assert failure.value.orig.sqlstate == "55P03"  # type: ignore[union-attr]
            routes.GATES["release"].set()
            assert (await request).status == 200
            async with other.engine.connect() as connection:  # released with the request
                await connection.execute(lock_row)
        finally:
            routes.GATES["release"].set()
            await asyncio.wait([request])
            await other.dispose()


async def test_behind_pgbouncer_every_statement_stays_in_a_transaction(
    project: Path, database: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The URL option PgBouncer's transaction mode needs (docs/postgresql.md).
    monkeypatch.setenv("AIOSITE_DATABASE__URL", f"{database.url}?prepared_statement_cache_size=0")
    async with site_with_tables(project) as client:
        await add_note(client)
        with transaction_statements(client) as sent:
            assert (await client.get("/lazy/probe/get")).status == 200
        assert sent == ["BEGIN", "COMMIT"]


async def test_the_setting_turns_it_off(
    project: Path, database: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIOSITE_DATABASE__BEGIN_AT_FIRST_WRITE", "false")
    async with site_with_tables(project) as client:
        await add_note(client)
        with transaction_statements(client) as sent:
            assert (await client.get("/lazy/probe/get")).status == 200
        assert sent == ["BEGIN", "COMMIT"]
