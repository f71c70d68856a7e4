"""Transactions that lose a race, on a real PostgreSQL: two requests lock two rows in
opposite orders (held in step with asyncio events) until the server declares a deadlock.
The loser's request is a 503 with Retry-After and one warning line, on the ORM session
and on the fast path; ``run_transaction`` runs the loser's unit again and both succeed.
A SERIALIZABLE check-then-insert race, a row locked with NOWAIT, a SQLite database
locked by another writer: each a 503 too, never a 500."""

from __future__ import annotations

import asyncio
import importlib
import logging
import sqlite3
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import text

from aiosite import database_of
from aiosite.testing import csrf_headers
from tests.conftest import ProjectFactory, TestDatabase, site_with_tables

MODELS = """
    from sqlalchemy import String
    from sqlalchemy.orm import Mapped, mapped_column

    from aiosite import Model


    class Account(Model):
        __tablename__ = "bank_account"

        id: Mapped[int] = mapped_column(primary_key=True)
        balance: Mapped[int]


    class Label(Model):
        __tablename__ = "bank_label"

        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(50), unique=True)
"""

ROUTES = """
    import asyncio

    from aiohttp import web
    from sqlalchemy import bindparam, select, update
    from sqlalchemy.ext.asyncio import AsyncSession

    from aiosite import (
        Prepared, Routes, db_session, fast_path, json_response, run_transaction
    )

    from .models import Account, Label

    routes = Routes()

    # Set by the tests: the events two requests hold each other in step with.
    GATES: dict[str, asyncio.Event] = {}
    # How many times each request to /nowait ran its unit of work.
    RUNS: list[int] = []

    DEBIT = Prepared(
        update(Account)
        .where(Account.id == bindparam("account"))
        .values(balance=Account.balance - bindparam("amount"))
    )
    CREDIT = Prepared(
        update(Account)
        .where(Account.id == bindparam("account"))
        .values(balance=Account.balance + bindparam("amount"))
    )


    async def meet(query) -> None:
        # Holding the lock on its first row: tell the other transfer, and wait until it
        # holds its own. Each then asks for the other's row: a circle of waits.
        GATES[query["name"]].set()
        await GATES[query["other"]].wait()


    def transfer(query):
        return int(query["source"]), int(query["target"]), int(query["amount"])


    async def orm_move(session: AsyncSession, query, *, wait: bool) -> None:
        source, target, amount = transfer(query)
        await session.execute(
            update(Account).where(Account.id == source).values(balance=Account.balance - amount)
        )
        if wait:
            await meet(query)
        await session.execute(
            update(Account).where(Account.id == target).values(balance=Account.balance + amount)
        )


    async def fast_move(connection, query, *, wait: bool) -> None:
        source, target, amount = transfer(query)
        await connection.execute(DEBIT, account=source, amount=amount)
        if wait:
            await meet(query)
        await connection.execute(CREDIT, account=target, amount=amount)


    @routes.post("/orm", name="orm")
    async def orm_transfer(request: web.Request) -> web.Response:
        await orm_move(db_session(request), request.query, wait=True)
        return json_response({"attempts": 1})


    @routes.post("/orm-commit", name="orm_commit")
    async def orm_commit_transfer(request: web.Request) -> web.Response:
        # The second UPDATE is the unit of work's, at the commit after the handler.
        source, target, amount = transfer(request.query)
        session = db_session(request)
        credited = await session.get(Account, target)
        await session.execute(
            update(Account).where(Account.id == source).values(balance=Account.balance - amount)
        )
        await meet(request.query)
        credited.balance += amount
        return json_response({"attempts": 1})


    @routes.post("/orm-retry", name="orm_retry")
    async def orm_retry(request: web.Request) -> web.Response:
        runs = 0

        async def work(session: AsyncSession) -> int:
            nonlocal runs
            runs += 1
            await orm_move(session, request.query, wait=runs == 1)
            return runs

        attempts = int(request.query.get("attempts", "3"))
        return json_response({"attempts": await run_transaction(request, work, attempts=attempts)})


    @routes.post("/fast", name="fast")
    async def fast_transfer(request: web.Request) -> web.Response:
        async with fast_path(request).transaction() as connection:
            await fast_move(connection, request.query, wait=True)
        return json_response({"attempts": 1})


    @routes.post("/fast-retry", name="fast_retry")
    async def fast_retry(request: web.Request) -> web.Response:
        runs = 0

        async def work(connection) -> int:
            nonlocal runs
            runs += 1
            await fast_move(connection, request.query, wait=runs == 1)
            return runs

        return json_response({"attempts": await fast_path(request).run_transaction(work)})


    @routes.post("/label", name="label")
    async def label(request: web.Request) -> web.Response:
        # Check, then insert: under SERIALIZABLE, PostgreSQL reports the race between two
        # of these as a serialization failure (not a unique violation), and the loser's
        # second run finds the row.
        name, runs = request.query["label"], 0

        async def find_or_create(session: AsyncSession) -> int:
            nonlocal runs
            runs += 1
            found = await session.scalar(select(Label).where(Label.name == name))
            if found is None:
                if runs == 1:
                    await meet(request.query)
                found = Label(name=name)
                session.add(found)
                await session.flush()
            return found.id

        label_id = await run_transaction(request, find_or_create, isolation_level="SERIALIZABLE")
        return json_response({"id": label_id, "attempts": runs})


    @routes.post("/nowait", name="nowait")
    async def nowait(request: web.Request) -> web.Response:
        runs = 0

        async def work(session: AsyncSession) -> None:
            nonlocal runs
            runs += 1
            await session.get(Account, 1, with_for_update={"nowait": True})

        try:
            await run_transaction(request, work)
        finally:
            RUNS.append(runs)
        return json_response({"attempts": runs})


    @routes.post("/boundary", name="boundary")
    async def boundary(request: web.Request) -> web.Response:
        session = db_session(request)
        account = await session.get(Account, 1)  # the request's session has a connection
        account.balance += 5  # written before the unit: committed when the unit starts

        async def work(unit: AsyncSession) -> int:
            mine = await unit.get(Account, 1)  # no wait for a lock of its own request
            mine.balance += 1
            return mine.balance

        balance = await run_transaction(request, work)
        await session.refresh(account)  # the unit changed it: read it again
        account.balance += 100  # after the unit: the request's session, as usual
        if request.query.get("then") == "fail":
            raise web.HTTPBadRequest(text="refused after the unit")
        return json_response({"balance": balance})


    @routes.post("/deposit", name="deposit")
    async def deposit(request: web.Request) -> web.Response:
        account = await db_session(request).get(Account, int(request.query["account"]))
        account.balance += 1
        return json_response({"balance": account.balance})
"""

FILES = {"PKG/bank/__init__.py": "", "PKG/bank/models.py": MODELS, "PKG/bank/routes.py": ROUTES}

Client = TestClient[web.Request, web.Application]


@pytest.fixture
def project(make_project: ProjectFactory, database: TestDatabase) -> Path:
    return make_project(FILES, apps=["bank"])


def bank_routes(project: Path) -> ModuleType:
    """The project's routes module, as the site imported it (its GATES)."""
    return importlib.import_module(f"{project.name}.bank.routes")


async def open_accounts(client: Client) -> None:
    async with database_of(client.app).engine.begin() as connection:
        await connection.execute(text("INSERT INTO bank_account VALUES (1, 100), (2, 100)"))


async def balances(client: Client) -> tuple[int, int]:
    async with database_of(client.app).engine.connect() as connection:
        rows = await connection.execute(text("SELECT balance FROM bank_account ORDER BY id"))
        first, second = rows.scalars().all()
    return first, second


async def two_transfers(client: Client, project: Path, path: str) -> list[Any]:
    """A moves 10 from account 1 to 2 while B moves 3 from 2 to 1, each locking its
    source row first: a deadlock, which PostgreSQL breaks after deadlock_timeout (1 s)
    by failing one of them."""
    gates = bank_routes(project).GATES
    gates.clear()
    gates.update(a=asyncio.Event(), b=asyncio.Event())
    headers = await csrf_headers(client)
    a = {"source": "1", "target": "2", "amount": "10", "name": "a", "other": "b"}
    b = {"source": "2", "target": "1", "amount": "3", "name": "b", "other": "a"}
    return list(
        await asyncio.gather(
            client.post(path, params=a, headers=headers),
            client.post(path, params=b, headers=headers),
        )
    )


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.WARNING]


@pytest.mark.db_backends("postgresql")
@pytest.mark.parametrize(
    "path", ["/bank/orm", "/bank/orm-commit", "/bank/fast", "/bank/orm-retry?attempts=1"]
)
async def test_the_loser_of_a_deadlock_gets_a_503_and_one_log_line(
    project: Path, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with site_with_tables(project) as client:
        await open_accounts(client)
        caplog.clear()
        a, b = await two_transfers(client, project, path)
        assert sorted([a.status, b.status]) == [200, 503]
        loser, winner = (a, b) if a.status == 503 else (b, a)
        assert loser.headers["Retry-After"] == "1"
        assert "conflicted with another one" in await loser.text()
        assert (await winner.json())["attempts"] == 1
        # The loser's first UPDATE was rolled back with the rest of its transaction.
        assert await balances(client) == ((90, 110) if winner is a else (103, 97))
        # The connection went back to the pool, usable.
        assert database_of(client.app).engine.sync_engine.pool.checkedout() == 0
    [line] = warnings_of(caplog)
    assert line.levelno == logging.WARNING
    assert line.exc_info is None  # no traceback: nothing is wrong with the code
    assert line.getMessage() == (
        f"database conflict in POST {path.partition('?')[0]}, answered 503: "
        "DeadlockDetectedError: deadlock detected [40P01]"
    )


@pytest.mark.db_backends("postgresql")
@pytest.mark.parametrize("path", ["/bank/orm-retry", "/bank/fast-retry"])
async def test_run_transaction_runs_the_loser_again(
    project: Path, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiosite.db")
    async with site_with_tables(project) as client:
        await open_accounts(client)
        caplog.clear()
        a, b = await two_transfers(client, project, path)
        assert (a.status, b.status) == (200, 200)
        attempts = sorted([(await a.json())["attempts"], (await b.json())["attempts"]])
        assert attempts == [1, 2]
        # Both transfers, each once: the loser's first attempt left nothing behind.
        assert await balances(client) == (100 - 10 + 3, 100 + 10 - 3)
    assert warnings_of(caplog) == []
    retried = [r.getMessage() for r in caplog.records if "running it again" in r.getMessage()]
    assert len(retried) == 1
    handler = {"/bank/orm-retry": "orm_retry", "/bank/fast-retry": "fast_retry"}[path]
    assert retried[0] == (
        f"{handler}.work: transaction conflict (DeadlockDetectedError: deadlock detected "
        "[40P01]); running it again, attempt 2 of 3"
    )


@pytest.mark.db_backends("postgresql")
async def test_a_serializable_check_then_insert_race_is_run_again(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiosite.db")
    async with site_with_tables(project) as client:
        caplog.clear()
        gates = bank_routes(project).GATES
        gates.update(a=asyncio.Event(), b=asyncio.Event())
        headers = await csrf_headers(client)
        # Both look for the label and find none before either inserts it.
        a, b = await asyncio.gather(
            client.post(
                "/bank/label", params={"label": "x", "name": "a", "other": "b"}, headers=headers
            ),
            client.post(
                "/bank/label", params={"label": "x", "name": "b", "other": "a"}, headers=headers
            ),
        )
        assert (a.status, b.status) == (200, 200)
        found = [await a.json(), await b.json()]
        assert found[0]["id"] == found[1]["id"]  # one label: the second run found it
        assert sorted(f["attempts"] for f in found) == [1, 2]
        async with database_of(client.app).engine.connect() as connection:
            count = await connection.scalar(text("SELECT count(*) FROM bank_label"))
        assert count == 1
    assert warnings_of(caplog) == []
    [retried] = [r.getMessage() for r in caplog.records if "running it again" in r.getMessage()]
    assert "SerializationError: could not serialize access" in retried
    assert "[40001]" in retried


@pytest.mark.db_backends("postgresql")
async def test_a_row_locked_elsewhere_with_nowait_is_a_503_not_retried(
    project: Path, database: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    async with site_with_tables(project) as client:
        await open_accounts(client)
        caplog.clear()
        holder = database.open()
        try:
            async with holder.engine.connect() as connection:
                # Another transaction holds row 1 until the end of the block.
                await connection.execute(text("SELECT * FROM bank_account WHERE id = 1 FOR UPDATE"))
                resp = await client.post("/bank/nowait", headers=await csrf_headers(client))
                await connection.rollback()
        finally:
            await holder.dispose()
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "5"
        assert "database is busy" in await resp.text()
        assert bank_routes(project).RUNS == [1]  # a lock held elsewhere: not run again
        resp = await client.post("/bank/nowait", headers=await csrf_headers(client))
        assert resp.status == 200  # the lock is gone
    [line] = warnings_of(caplog)
    assert line.exc_info is None
    assert line.getMessage() == (
        "database busy in POST /bank/nowait, answered 503: LockNotAvailableError: "
        'could not obtain lock on row in relation "bank_account" [55P03]'
    )


@pytest.mark.db_backends("sqlite")
async def test_a_sqlite_database_locked_by_another_writer_is_a_503(
    project: Path,
    database: TestDatabase,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # SQLite's wait for a lock, in seconds.
    monkeypatch.setenv("AIOSITE_DATABASE__CONNECT_TIMEOUT", "0.2")
    async with site_with_tables(project) as client:
        await open_accounts(client)
        caplog.clear()
        other = sqlite3.connect(database.url.partition(":///")[2], isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # the database's one write lock
            resp = await client.post(
                "/bank/deposit", params={"account": "1"}, headers=await csrf_headers(client)
            )
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "5"
        resp = await client.post(
            "/bank/deposit", params={"account": "1"}, headers=await csrf_headers(client)
        )
        assert (resp.status, await resp.json()) == (200, {"balance": 101})
    [line] = warnings_of(caplog)
    assert line.exc_info is None
    assert line.getMessage() == (
        "database busy in POST /bank/deposit, answered 503: "
        "OperationalError: database is locked [SQLITE_BUSY]"
    )


async def test_run_transaction_commits_the_request_session_first(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One pooled connection: a unit that needed a second one would wait for it, then 503.
    monkeypatch.setenv("AIOSITE_DATABASE__POOL_SIZE", "1")
    monkeypatch.setenv("AIOSITE_DATABASE__MAX_OVERFLOW", "0")
    monkeypatch.setenv("AIOSITE_DATABASE__POOL_TIMEOUT", "1")
    async with site_with_tables(project) as client:
        await open_accounts(client)
        headers = await csrf_headers(client)
        resp = await client.post("/bank/boundary", params={"then": "fail"}, headers=headers)
        # The write before the unit and the unit are committed; what came after the
        # unit is rolled back with the request's failure.
        assert resp.status == 400
        assert await balances(client) == (106, 100)
        resp = await client.post("/bank/boundary", headers=headers)
        assert (resp.status, await resp.json()) == (200, {"balance": 112})
        assert await balances(client) == (212, 100)


async def test_attempts_must_be_one_or_more(database: TestDatabase) -> None:
    async def work(session: object) -> None:
        raise AssertionError("never run")

    db = database.open()
    try:
        with pytest.raises(ValueError, match="attempts must be 1 or more, not 0"):
            await db.run_transaction(work, attempts=0)
    finally:
        await db.dispose()


@pytest.mark.db_backends("postgresql")
async def test_is_conflict_tells_the_errors_run_transaction_retries(
    database: TestDatabase,
) -> None:
    from sqlalchemy.exc import DBAPIError

    from aiosite.db.errors import is_conflict

    opened = database.open()
    raised: list[BaseException] = []
    try:
        for code in ("40P01", "40001", "55P03"):
            raise_it = text(f"DO $$ BEGIN RAISE EXCEPTION 'race' USING ERRCODE = '{code}'; END $$")
            async with opened.engine.connect() as connection:
                with pytest.raises(DBAPIError) as wrapped:
                    await connection.execute(raise_it)
            raised += [wrapped.value, wrapped.value.orig.__cause__]  # type: ignore[union-attr]
    finally:
        await opened.dispose()
    # SQLAlchemy's wrapper and asyncpg's own error: a deadlock and a serialization
    # failure are conflicts (worth running again), a lock not available is not.
    assert [is_conflict(exc) for exc in raised] == [True, True, True, True, False, False]
