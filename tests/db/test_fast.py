"""The fast data path (``Prepared``, ``fast_path``) on SQLite and PostgreSQL, mostly
through HTTP: results, time zones, transactions, ``update_by_pk``, errors, its pool."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import Integer, any_, bindparam, func, insert, select
from sqlalchemy.dialects.postgresql import ARRAY

from aiosite import ImproperlyConfigured, Prepared, fast_path, session_scope
from aiosite.db.fast_path import FastConnection
from aiosite.testing import csrf_headers
from tests.conftest import (
    POSTGRESQL_URL,
    ProjectFactory,
    TestDatabase,
    require_service,
    site_client,
    site_with_tables,
)
from tests.db.proxy import TcpProxy

Client = TestClient[web.Request, web.Application]

MODELS = """
    from datetime import datetime
    from typing import Any

    from sqlalchemy import JSON, String
    from sqlalchemy.orm import Mapped, mapped_column

    from aiosite import Model


    class Thing(Model):
        __tablename__ = "PKG_thing"

        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        # Attributes named differently from their columns.
        label: Mapped[str] = mapped_column("name", String(50))
        when: Mapped[datetime] = mapped_column("happened_at")


    class Pair(Model):
        __tablename__ = "PKG_pair"

        left: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        right: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        note: Mapped[str] = mapped_column(String(20), default="")


    class Doc(Model):
        __tablename__ = "PKG_doc"

        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        data: Mapped[dict[str, Any]] = mapped_column(JSON)
"""

QUERIES = """
    from sqlalchemy import Float, Numeric, bindparam, cast, func, insert, literal_column, select
    from sqlalchemy import update

    from aiosite import Prepared

    from .models import Doc, Thing

    ADD = Prepared(
        insert(Thing).values(id=bindparam("id"), label=bindparam("label"), when=bindparam("when"))
    )
    ONE = Prepared(select(Thing.id, Thing.label, Thing.when).where(Thing.id == bindparam("id")))
    AT = Prepared(select(Thing.id).where(Thing.when == bindparam("when")).order_by(Thing.id))
    WHEN = Prepared(select(Thing.when).where(Thing.id == bindparam("id")))
    ALL = Prepared(select(Thing).order_by(Thing.id), into=Thing)
    LABELS = Prepared(select(Thing.id, Thing.label).order_by(Thing.id))
    COUNT = Prepared(select(func.count()).select_from(Thing))
    FIRST_TWO = Prepared(select(Thing.id).order_by(Thing.id).limit(2))
    NAMED_B = Prepared(select(Thing.id).where(Thing.label == "b"))
    RENAME = Prepared(
        update(Thing).where(Thing.id == bindparam("thing_id")).values(label=bindparam("new"))
    )
    PING = Prepared(select(literal_column("1").label("one")))
    ADD_DOC = Prepared(insert(Doc).values(id=bindparam("id"), data=bindparam("data")))
    NUMBERS = Prepared(
        select(
            cast(Thing.id, Float).label("as_float"),
            cast(Thing.id, Numeric(10, 2)).label("as_numeric"),
        ).where(Thing.id == bindparam("id"))
    )
    DOC = Prepared(select(Doc.data).where(Doc.id == bindparam("id")))
"""

ROUTES = """
    import random
    from datetime import datetime

    from aiohttp import web

    from aiosite import Routes, fast_path, json_response, render

    from .models import Thing
    from .queries import ADD, ALL, COUNT, FIRST_TWO, LABELS, NAMED_B, ONE, PING

    routes = Routes()


    @routes.get("/plain", name="plain")
    async def plain(request: web.Request) -> web.Response:
        return web.Response(text="no database here")


    @routes.get("/ping", name="ping")
    async def ping(request: web.Request) -> web.Response:
        return json_response({"one": await fast_path(request).fetch_value(PING)})


    @routes.get("/count", name="count")
    async def count(request: web.Request) -> web.Response:
        return json_response({"count": await fast_path(request).fetch_value(COUNT)})


    @routes.get("/one/{id}", name="one")
    async def one(request: web.Request) -> web.Response:
        row = await fast_path(request).fetch_one(ONE, id=int(request.match_info["id"]))
        if row is None:
            raise web.HTTPNotFound()
        when = row["happened_at"]
        return json_response(
            {
                "name": row["name"],
                "when": when.isoformat(),
                "is_utc": when.tzinfo is not None and when.utcoffset().total_seconds() == 0,
            }
        )


    @routes.get("/all", name="all")
    async def all_things(request: web.Request) -> web.Response:
        things = await fast_path(request).fetch(ALL)
        return json_response(
            [[type(t).__name__, t.id, t.label, t.when.isoformat()] for t in things]
        )


    @routes.get("/literals", name="literals")
    async def literals(request: web.Request) -> web.Response:
        fast = fast_path(request)
        first_two = [row["id"] for row in await fast.fetch(FIRST_TWO)]
        named_b = [row["id"] for row in await fast.fetch(NAMED_B)]
        return json_response({"first_two": first_two, "named_b": named_b})


    @routes.post("/add", name="add")
    async def add(request: web.Request) -> web.Response:
        query = request.query
        when = datetime.fromisoformat(query["when"])
        await fast_path(request).execute(ADD, id=int(query["id"]), label=query["label"], when=when)
        return json_response({"ok": True}, status=201)


    @routes.get("/labels.html", name="labels")
    async def labels(request: web.Request) -> web.Response:
        # The rows as they come, next to a dict, as a page lists them.
        rows = await fast_path(request).fetch(LABELS)
        rows.append({"id": 0, "name": "<extra>"})
        return await render(request, "things/labels.html", {"rows": rows})


    @routes.post("/relabel", name="relabel")
    async def relabel(request: web.Request) -> web.Response:
        # Every row, in an order of this request's own: overlapping, differently ordered.
        seed = int(request.query["seed"])
        ids = range(1, int(request.query["rows"]) + 1)
        rows = [{"id": i, "name": f"r{seed}"} for i in ids]
        random.Random(seed).shuffle(rows)
        await fast_path(request).update_by_pk(Thing, rows)
        return json_response({"ok": True})
"""

FILES = {
    "PKG/things/__init__.py": "",
    "PKG/things/templates/things/labels.html": (
        "{% for row in rows %}{{ row.id }}={{ row.name }};{% endfor %}"
    ),
    "PKG/things/models.py": MODELS,
    "PKG/things/queries.py": QUERIES,
    "PKG/things/routes.py": ROUTES,
}

JAN_2 = datetime(2024, 1, 2, 1, 4, 5, tzinfo=UTC)


@pytest.fixture
def project(make_project: ProjectFactory, database: TestDatabase) -> Path:
    return make_project(FILES, apps=["home", "things"])


def project_module(root: Path, name: str) -> ModuleType:
    """A module of the project's ``things`` app (imported by the site already)."""
    return importlib.import_module(f"{root.name}.things.{name}")


async def add(client: Client, id: int, label: str, when: datetime = JAN_2) -> None:
    resp = await client.post(
        "/things/add",
        params={"id": id, "label": label, "when": str(when)},
        headers=await csrf_headers(client),
    )
    assert resp.status == 201, await resp.text()


async def count(client: Client) -> int:
    resp = await client.get("/things/count")
    assert resp.status == 200, await resp.text()
    return int((await resp.json())["count"])


async def things_by_orm(client: Client, root: Path) -> dict[int, tuple[str, datetime]]:
    """What the table holds, read through the ORM rather than the fast path."""
    thing = project_module(root, "models").Thing
    async with session_scope(client.app) as session:
        found = (await session.scalars(select(thing).order_by(thing.id))).all()
    return {t.id: (t.label, t.when) for t in found}


async def write_then_raise(
    block: contextlib.AbstractAsyncContextManager[FastConnection],
    statements: list[tuple[Prepared[Any], dict[str, Any]]],
) -> None:
    """Run ``statements`` in ``block`` (a fast connection or transaction), then raise
    LookupError, unless a statement raised first."""
    async with block as connection:
        for query, params in statements:
            await connection.execute(query, **params)
        raise LookupError


# --- results -------------------------------------------------------------------------


async def test_fetch_fetch_one_fetch_value_and_execute_in_handlers(project: Path) -> None:
    async with site_with_tables(project) as client:
        assert await count(client) == 0
        await add(
            client, 1, "a", datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
        )
        await add(client, 2, "b")
        assert await count(client) == 2
        resp = await client.get("/things/one/1")
        assert await resp.json() == {
            "name": "a",
            "when": "2024-01-02T01:04:05+00:00",
            "is_utc": True,
        }
        assert (await client.get("/things/one/99")).status == 404


async def test_utc_datetimes_bind_and_come_back_aware(project: Path) -> None:
    async with site_with_tables(project) as client:
        await add(client, 1, "a", JAN_2)
        await add(client, 2, "b", JAN_2 + timedelta(days=1))
        queries = project_module(project, "queries")
        fast = fast_path(client.app)
        when = await fast.fetch_value(queries.WHEN, id=1)
        assert when == JAN_2
        assert when.utcoffset() == timedelta(0)
        row = await fast.fetch_one(queries.ONE, id=2)
        assert row["happened_at"].tzinfo is not None
        assert row["happened_at"].utcoffset() == timedelta(0)
        # The same instant in another zone finds the row.
        karachi = JAN_2.astimezone(timezone(timedelta(hours=5)))
        assert [r["id"] for r in await fast.fetch(queries.AT, when=karachi)] == [1]


async def test_into_a_model_gives_instances(project: Path) -> None:
    async with site_with_tables(project) as client:
        await add(client, 2, "b")
        await add(client, 1, "a")
        resp = await client.get("/things/all")
        assert await resp.json() == [
            ["Thing", 1, "a", "2024-01-02T01:04:05+00:00"],
            ["Thing", 2, "b", "2024-01-02T01:04:05+00:00"],
        ]


async def test_literal_values_in_a_statement(project: Path) -> None:
    async with site_with_tables(project) as client:
        for id, label in ((1, "a"), (2, "b"), (3, "c"), (4, "b")):
            await add(client, id, label)
        resp = await client.get("/things/literals")
        assert await resp.json() == {"first_two": [1, 2], "named_b": [2, 4]}


async def test_literal_values_cannot_be_overridden_by_parameters(project: Path) -> None:
    # "literal values in the statement are fixed" (Prepared's docstring).
    async with site_with_tables(project) as client:
        for id in range(1, 5):
            await add(client, id, "x")
        first_two = project_module(project, "queries").FIRST_TWO
        with pytest.raises(TypeError, match="param_1"):
            await fast_path(client.app).fetch(first_two, param_1=4)


async def test_an_unknown_parameter_message_names_only_real_parameters(project: Path) -> None:
    # A statement with only literal values takes no parameters; SQLAlchemy's anonymous
    # names for its literals are not something a caller can pass.
    async with site_with_tables(project) as client:
        first_two = project_module(project, "queries").FIRST_TWO
        with pytest.raises(TypeError, match=r"^query has no parameter\(s\) limit; it takes none$"):
            await fast_path(client.app).fetch(first_two, limit=3)


async def test_a_json_column_reads_back_as_python_values(project: Path) -> None:
    async with site_with_tables(project) as client:
        queries = project_module(project, "queries")
        fast = fast_path(client.app)
        await fast.execute(queries.ADD_DOC, id=1, data={"tags": ["a"], "n": 1})
        assert await fast.fetch_value(queries.DOC, id=1) == {"tags": ["a"], "n": 1}


# --- connections and transactions ------------------------------------------------------


async def test_a_connection_runs_several_statements(project: Path, database: TestDatabase) -> None:
    async with site_with_tables(project) as client:
        queries = project_module(project, "queries")
        fast = fast_path(client.app)
        async with fast.connection() as connection:
            await connection.execute(queries.ADD, id=1, label="a", when=JAN_2)
            await connection.execute(queries.RENAME, thing_id=1, new="renamed")
            # On SQLite the block is one transaction: only this connection sees the row.
            assert await connection.fetch_value(queries.COUNT) == 1
            assert (await connection.fetch_one(queries.ONE, id=1))["name"] == "renamed"
            if database.backend == "postgresql":
                pid = Prepared(select(func.pg_backend_pid()))
                assert await connection.fetch_value(pid) == await connection.fetch_value(pid)
        assert await things_by_orm(client, project) == {1: ("renamed", JAN_2)}
        with pytest.raises(LookupError):
            await write_then_raise(
                fast.connection(), [(queries.ADD, {"id": 2, "label": "b", "when": JAN_2})]
            )
        # PostgreSQL commits each statement by itself; SQLite's block rolls back.
        expected = 2 if database.backend == "postgresql" else 1
        assert await count(client) == expected


async def test_a_transaction_commits_together(project: Path) -> None:
    async with site_with_tables(project) as client:
        queries = project_module(project, "queries")
        fast = fast_path(client.app)
        async with fast.transaction() as connection:
            await connection.execute(queries.ADD, id=1, label="a", when=JAN_2)
            await connection.execute(queries.ADD, id=2, label="b", when=JAN_2)
            # Not visible to other connections before the end of the block.
            assert await fast.fetch_value(queries.COUNT) == 0
            assert await connection.fetch_value(queries.COUNT) == 2
        assert await count(client) == 2


async def test_a_transaction_rolls_back_when_the_block_raises(project: Path) -> None:
    async with site_with_tables(project) as client:
        queries = project_module(project, "queries")
        fast = fast_path(client.app)
        await add(client, 1, "a")
        with pytest.raises(LookupError):
            await write_then_raise(
                fast.transaction(),
                [
                    (queries.ADD, {"id": 2, "label": "b", "when": JAN_2}),
                    (queries.RENAME, {"thing_id": 1, "new": "changed"}),
                ],
            )
        assert await things_by_orm(client, project) == {1: ("a", JAN_2)}
        # A failing statement rolls back the ones before it too.
        third = (queries.ADD, {"id": 3, "label": "c", "when": JAN_2})
        duplicate = (queries.ADD, {"id": 1, "label": "again", "when": JAN_2})
        with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
            await write_then_raise(fast.transaction(), [third, duplicate])
        assert await count(client) == 1
        # The pool is usable afterwards.
        await add(client, 4, "d")
        assert await count(client) == 2


# --- update_by_pk ----------------------------------------------------------------------


async def test_update_by_pk_writes_many_rows_in_one_call(project: Path) -> None:
    async with site_with_tables(project) as client:
        for id, label in ((1, "a"), (2, "b"), (3, "c"), (4, "d")):
            await add(client, id, label)
        models = project_module(project, "models")
        fast = fast_path(client.app)
        later = datetime(2025, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=-3)))
        await fast.update_by_pk(
            models.Thing,
            [
                {"id": 3, "name": "C", "happened_at": later},
                {"id": 1, "name": "A", "happened_at": later},
                {"id": 4, "name": "D", "happened_at": later},
            ],
        )
        # A Table works as well as a model; an empty list is nothing to do.
        await fast.update_by_pk(models.Thing.__table__, [{"id": 2, "name": "B"}])
        await fast.update_by_pk(models.Thing, [])
        assert await things_by_orm(client, project) == {
            1: ("A", later),
            2: ("B", JAN_2),
            3: ("C", later),
            4: ("D", later),
        }


@pytest.fixture
def new_york() -> Iterator[None]:
    """The process's local time zone is not UTC (servers often are not)."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


async def test_update_by_pk_takes_naive_datetimes_as_utc(project: Path, new_york: None) -> None:
    # UtcDateTime: "Naive values are taken to be UTC", as fetch and execute do here.
    async with site_with_tables(project) as client:
        await add(client, 1, "a")
        models = project_module(project, "models")
        noon = datetime(2024, 6, 1, 12, 0)
        await fast_path(client.app).update_by_pk(models.Thing, [{"id": 1, "happened_at": noon}])
        assert await things_by_orm(client, project) == {1: ("a", noon.replace(tzinfo=UTC))}


async def test_update_by_pk_accepts_what_the_column_type_accepts(project: Path) -> None:
    # UtcDateTime parses ISO 8601 strings; so do the ORM, fetch and execute.
    async with site_with_tables(project) as client:
        await add(client, 1, "a")
        models = project_module(project, "models")
        await fast_path(client.app).update_by_pk(
            models.Thing, [{"id": 1, "happened_at": "2024-06-01T12:00:00+00:00"}]
        )
        expected = datetime(2024, 6, 1, 12, tzinfo=UTC)
        assert await things_by_orm(client, project) == {1: ("a", expected)}


async def test_update_by_pk_refuses_what_it_cannot_do(project: Path) -> None:
    async with site_with_tables(project) as client:
        await add(client, 1, "a")
        models = project_module(project, "models")
        fast = fast_path(client.app)
        thing = models.Thing
        with pytest.raises(ImproperlyConfigured, match="needs a single-column primary key"):
            await fast.update_by_pk(models.Pair, [{"left": 1, "right": 2, "note": "x"}])
        with pytest.raises(TypeError, match="needs its primary key 'id'"):
            await fast.update_by_pk(thing, [{"name": "no key"}])
        with pytest.raises(TypeError, match="unknown: colour"):
            await fast.update_by_pk(thing, [{"id": 1, "colour": "red"}])
        # Column names, not attribute names.
        with pytest.raises(TypeError, match="unknown: label"):
            await fast.update_by_pk(thing, [{"id": 1, "label": "x"}])
        with pytest.raises(TypeError, match="set no column besides 'id'"):
            await fast.update_by_pk(thing, [{"id": 1}])
        with pytest.raises(TypeError, match="neither a model nor a Table"):
            await fast.update_by_pk("a_table_name", [{"id": 1, "name": "x"}])
        assert await things_by_orm(client, project) == {1: ("a", JAN_2)}


async def test_update_by_pk_rows_must_agree_and_the_last_of_a_key_wins(project: Path) -> None:
    async with site_with_tables(project) as client:
        await add(client, 1, "a")
        await add(client, 2, "b")
        thing = project_module(project, "models").Thing
        fast = fast_path(client.app)
        with pytest.raises(TypeError, match="needs the same keys"):
            await fast.update_by_pk(thing, [{"id": 1, "name": "x"}, {"id": 2}])
        with pytest.raises(TypeError, match="needs the same keys"):
            await fast.update_by_pk(
                thing, [{"id": 1, "name": "x"}, {"id": 2, "happened_at": JAN_2}]
            )
        await fast.update_by_pk(
            thing, [{"id": 1, "name": "first"}, {"id": 2, "name": "B"}, {"id": 1, "name": "last"}]
        )
        assert await things_by_orm(client, project) == {1: ("last", JAN_2), 2: ("B", JAN_2)}


async def test_python_side_column_defaults_are_refused(project: Path) -> None:
    # Pair.note has default="": SQLAlchemy computes it in Python, which the fast path
    # does not do; better refused than a NULL sent (and a misleading 409).
    async with site_with_tables(project) as client:
        pair = project_module(project, "models").Pair
        query = Prepared(insert(pair).values(left=bindparam("left"), right=bindparam("right")))
        with pytest.raises(ImproperlyConfigured, match=r"default.*note.*computed in Python"):
            await fast_path(client.app).execute(query, left=1, right=2)


async def test_rows_answer_keys_attributes_and_dict(project: Path) -> None:
    async with site_with_tables(project) as client:
        await add(client, 1, "a")
        await add(client, 2, "<b>")
        # In a template, as they come from fetch().
        resp = await client.get("/things/labels.html")
        assert await resp.text() == "1=a;2=&lt;b&gt;;0=&lt;extra&gt;;"

        queries = project_module(project, "queries")
        fast = fast_path(client.app)
        labels = await fast.fetch(queries.LABELS)
        # The columns' names, as the statement labels them (attribute label is "name").
        assert [(row.id, row.name, row["name"]) for row in labels] == [
            (1, "a", "a"),
            (2, "<b>", "<b>"),
        ]
        assert [dict(row) for row in labels] == [{"id": 1, "name": "a"}, {"id": 2, "name": "<b>"}]
        with pytest.raises(AttributeError, match="no column 'label'"):
            _ = labels[0].label
        # An aggregate: named as SQLAlchemy labels it in the statement.
        count = await fast.fetch_one(queries.COUNT)
        assert count.count_1 == count["count_1"] == 2
        # Converted by the column type (an aware datetime) and still a row.
        one = await fast.fetch_one(queries.ONE, id=1)
        assert one.happened_at == one["happened_at"] == JAN_2
        assert one.name == "a"
        assert dict(one) == {"id": 1, "name": "a", "happened_at": JAN_2}


async def test_float_and_numeric_results(project: Path) -> None:
    async with site_with_tables(project) as client:
        await add(client, 3, "c")
        numbers = project_module(project, "queries").NUMBERS
        row = await fast_path(client.app).fetch_one(numbers, id=3)
        assert row["as_float"] == 3.0
        assert isinstance(row["as_float"], float)
        assert row["as_numeric"] == Decimal("3.00")


@pytest.mark.db_backends("postgresql")
async def test_a_pool_that_stays_busy_gives_503_after_pool_timeout(
    make_project: ProjectFactory, database: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIOSITE_DATABASE__POOL_SIZE", "1")
    monkeypatch.setenv("AIOSITE_DATABASE__MAX_OVERFLOW", "0")
    monkeypatch.setenv("AIOSITE_DATABASE__POOL_TIMEOUT", "0.3")
    root = make_project(FILES, apps=["home", "things"])
    async with site_with_tables(root) as client:
        async with fast_path(client.app).connection():  # holds the pool's one connection
            resp = await client.get("/things/ping")
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "5"
        assert (await client.get("/things/ping")).status == 200


@pytest.mark.db_backends("postgresql")
async def test_requests_get_connections_in_the_order_they_asked(
    make_project: ProjectFactory, database: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIOSITE_DATABASE__POOL_SIZE", "1")
    monkeypatch.setenv("AIOSITE_DATABASE__MAX_OVERFLOW", "0")
    root = make_project(FILES, apps=["home", "things"])
    served: list[str] = []

    async def request(name: str) -> None:
        async with fast_path(client.app).connection() as connection:
            served.append(name)
            assert await connection.fetch_value(project_module(root, "queries").PING) == 1

    async with site_with_tables(root) as client:
        waiting: list[asyncio.Task[None]] = []
        async with fast_path(client.app).connection():  # holds the pool's one connection
            waiting += [asyncio.create_task(request(name)) for name in ("b", "c", "d")]
            await asyncio.sleep(0.05)  # all three in line
            # A request that asks while the connection is being handed over, before the
            # first in line resumes (under load there always is one): asyncpg's own pool
            # gave it the connection, and sent the woken request to the end of the line.
            asyncio.get_running_loop().call_soon(
                lambda: waiting.append(asyncio.create_task(request("newcomer")))
            )
        await asyncio.sleep(0)
        await asyncio.gather(*waiting)
    assert served == ["b", "c", "d", "newcomer"]


@pytest.mark.db_backends("postgresql")
async def test_a_request_cancelled_in_line_passes_its_turn_on(
    make_project: ProjectFactory, database: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIOSITE_DATABASE__POOL_SIZE", "1")
    monkeypatch.setenv("AIOSITE_DATABASE__MAX_OVERFLOW", "0")
    monkeypatch.setenv("AIOSITE_DATABASE__POOL_TIMEOUT", "2")
    root = make_project(FILES, apps=["home", "things"])
    served: list[str] = []

    async def request(name: str) -> None:
        async with fast_path(client.app).connection() as connection:
            served.append(name)
            assert await connection.fetch_value(project_module(root, "queries").PING) == 1

    async with site_with_tables(root) as client:
        async with fast_path(client.app).connection():  # holds the pool's one connection
            gone, handed, after = (
                asyncio.create_task(request(name)) for name in ("gone", "handed", "after")
            )
            await asyncio.sleep(0.05)  # all three in line
            gone.cancel()  # leaves the line while waiting
            await asyncio.sleep(0)
        # The connection was just handed to the next in line; it is cancelled before it
        # could take it (its client went away): the next one gets it.
        handed.cancel()
        await after
        for task in (gone, handed):
            with pytest.raises(asyncio.CancelledError):
                await task
        assert served == ["after"]
        # No turn was lost: the one connection serves request after request.
        for _ in range(3):
            assert (await client.get("/things/ping")).status == 200


@pytest.mark.db_backends("postgresql")
async def test_concurrent_overlapping_updates_do_not_deadlock(project: Path) -> None:
    touched = 2000
    async with site_with_tables(project) as client:
        # Each request sets 2,000 of 20,000 rows, in an order of its own: statements long
        # enough to overlap, on a table big enough that PostgreSQL walks the rows through
        # the primary key index in the arrays' order, the order their locks are taken in.
        thing = project_module(project, "models").Thing
        async with session_scope(client.app) as session:
            await session.execute(
                insert(thing), [{"id": i, "label": "start", "when": JAN_2} for i in range(20000)]
            )
        csrf = await csrf_headers(client)
        responses = await asyncio.gather(
            *(
                client.post("/things/relabel", params={"seed": seed, "rows": touched}, headers=csrf)
                for seed in range(20)
            )
        )
        statuses = [resp.status for resp in responses]
        assert statuses == [200] * 20, [await r.text() for r in responses if r.status != 200]
        labels = {label for label, _ in (await things_by_orm(client, project)).values()}
        # Each request set every row it touched in one statement: one of them wrote last.
        assert labels - {"start"} <= {f"r{seed}" for seed in range(20)}
        assert len(labels - {"start"}) == 1


# --- errors ----------------------------------------------------------------------------


async def test_missing_and_unknown_parameters_are_type_errors(project: Path) -> None:
    async with site_with_tables(project) as client:
        queries = project_module(project, "queries")
        fast = fast_path(client.app)
        with pytest.raises(TypeError, match=r"^query needs parameter\(s\) id$"):
            await fast.fetch_one(queries.ONE)
        with pytest.raises(TypeError, match=r"needs parameter\(s\) label, when$"):
            await fast.execute(queries.ADD, id=1)
        with pytest.raises(TypeError, match=r"has no parameter\(s\) colour; it takes id$"):
            await fast.fetch(queries.ONE, id=1, colour="red")
        with pytest.raises(TypeError, match=r"has no parameter\(s\) colour, size; it takes id$"):
            await fast.fetch_value(queries.ONE, id=1, colour="red", size=2)
        assert await count(client) == 0


async def test_a_list_parameter_for_in_is_improperly_configured(project: Path) -> None:
    async with site_with_tables(project) as client:
        thing = project_module(project, "models").Thing
        fast = fast_path(client.app)
        expanding = Prepared(select(thing.id).where(thing.id.in_(bindparam("ids", expanding=True))))
        with pytest.raises(ImproperlyConfigured, match=r"IN with a list parameter.*any_"):
            await fast.fetch(expanding, ids=[1, 2])
        literal_list = Prepared(select(thing.id).where(thing.id.in_([1, 2])))
        with pytest.raises(ImproperlyConfigured, match="IN with a list parameter"):
            await fast.fetch(literal_list)


@pytest.mark.db_backends("postgresql")
async def test_the_suggested_any_form_works(project: Path) -> None:
    async with site_with_tables(project) as client:
        for id in range(1, 5):
            await add(client, id, "x")
        thing = project_module(project, "models").Thing
        query = Prepared(
            select(thing.id)
            .where(thing.id == any_(bindparam("ids", type_=ARRAY(Integer))))
            .order_by(thing.id)
        )
        rows = await fast_path(client.app).fetch(query, ids=[4, 2, 9])
        assert [row["id"] for row in rows] == [2, 4]


async def test_a_duplicate_primary_key_is_a_409_not_a_500(project: Path) -> None:
    async with site_with_tables(project) as client:
        await add(client, 1, "a")
        resp = await client.post(
            "/things/add",
            params={"id": 1, "label": "again", "when": str(JAN_2)},
            headers=await csrf_headers(client),
        )
        assert resp.status == 409
        assert "conflicts with existing data" in await resp.text()
        assert await count(client) == 1


# --- PostgreSQL: the fast path's own pool ----------------------------------------------


@contextlib.asynccontextmanager
async def proxied(
    database: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy()
    await proxy.start()
    monkeypatch.setenv("AIOSITE_DATABASE__URL", proxy.url(database))
    try:
        yield proxy
    finally:
        await proxy.stop()


@pytest.mark.db_backends("postgresql")
async def test_an_unreachable_database_gives_503_and_the_site_keeps_serving(
    project: Path, database: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with proxied(database, monkeypatch) as proxy, site_with_tables(project) as client:
        await proxy.stop()
        # The fast pool has never connected: its first connection is refused.
        resp = await client.get("/things/count", headers={"Accept": "text/html"})
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "5"
        assert "The database is unavailable" in await resp.text()
        assert (await client.get("/things/plain")).status == 200
        await proxy.start()
        assert await count(client) == 0
        # Now its pooled connection dies under it.
        await proxy.stop()
        for _ in range(2):
            resp = await client.get("/things/count")
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "5"
        assert (await client.get("/things/plain")).status == 200
        await proxy.start()
        assert await count(client) == 0


@pytest.mark.db_backends("postgresql")
async def test_closing_the_site_closes_the_fast_pool(
    project: Path, database: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with proxied(database, monkeypatch) as proxy:
        async with site_with_tables(project) as client:
            # The engine's pooled connection (the start's check, the tables).
            assert await proxy.settle(1) == 1
            await add(client, 1, "a")
            assert await count(client) == 1
            assert await proxy.settle(2) == 2  # the fast path's pool, opened on first use
        assert await proxy.settle(0) == 0


@pytest.fixture
def limited_role() -> Iterator[str]:
    """A PostgreSQL role that may hold one connection at a time."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    role = f"aiosite_limited_{uuid.uuid4().hex[:10]}"
    admin_url = POSTGRESQL_URL.replace("+asyncpg", "")

    async def run(sql: str) -> None:
        connection = await asyncpg.connect(admin_url)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(run(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 1"))
    try:
        yield role
    finally:
        asyncio.run(run(f"DROP ROLE IF EXISTS {role}"))


async def test_a_server_refusing_more_connections_gives_503(
    make_project: ProjectFactory, limited_role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The site's engine holds the role's only connection; the fast pool's connect is
    # refused by the server ("too many connections"), as the session path's would be.
    url = POSTGRESQL_URL.replace("root@", f"{limited_role}@")
    monkeypatch.setenv("AIOSITE_DATABASE__URL", url)
    root = make_project(FILES, apps=["home", "things"])
    async with site_client(root) as client:
        resp = await client.get("/things/ping")
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "5"
        assert (await client.get("/things/plain")).status == 200
