"""The site's sessions are SiteSessions, whose ``get()`` builds its SELECT once per
model: the same SQL as SQLAlchemy's own ``get()``, the same objects, the identity map
answering without a query, an expired object read again; every other call is
SQLAlchemy's (options, row locks, composite keys, inheritance)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import event, text

from aiosite import database_of
from tests.conftest import ProjectFactory, TestDatabase, site_with_tables

MODELS = """
    from sqlalchemy import ForeignKey, String
    from sqlalchemy.orm import Mapped, mapped_column, relationship

    from aiosite import Model


    class Shelf(Model):
        __tablename__ = "lib_shelf"

        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(50))
        books: Mapped[list["Book"]] = relationship(lazy="raise", order_by="Book.id")


    class Book(Model):
        __tablename__ = "lib_book"

        id: Mapped[int] = mapped_column(primary_key=True)
        shelf_id: Mapped[int] = mapped_column(ForeignKey("lib_shelf.id"))
        title: Mapped[str] = mapped_column(String(50))


    class Loan(Model):  # a composite primary key
        __tablename__ = "lib_loan"

        book_id: Mapped[int] = mapped_column(primary_key=True)
        reader: Mapped[str] = mapped_column(String(50), primary_key=True)


    class Item(Model):  # joined inheritance: get(Item, id) gives the subclass
        __tablename__ = "lib_item"

        id: Mapped[int] = mapped_column(primary_key=True)
        kind: Mapped[str] = mapped_column(String(20))
        __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "item"}


    class Map(Item):
        __tablename__ = "lib_map"

        id: Mapped[int] = mapped_column(ForeignKey("lib_item.id"), primary_key=True)
        region: Mapped[str] = mapped_column(String(50))
        __mapper_args__ = {"polymorphic_identity": "map"}
"""

ROUTES = """
    from aiohttp import web
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import selectinload

    from aiosite import Routes, database_of, db_session, get_or_404, json_response

    from .models import Book, Item, Loan, Shelf

    routes = Routes()


    @routes.get("/book/{id}", name="book")
    async def book(request: web.Request) -> web.Response:
        found = await get_or_404(db_session(request), Book, request.match_info["id"])
        return json_response({"title": found.title, "session": type(db_session(request)).__name__})


    @routes.get("/twice/{id}", name="twice")
    async def twice(request: web.Request) -> web.Response:
        session = db_session(request)
        first = await session.get(Book, int(request.match_info["id"]))
        second = await session.get(Book, int(request.match_info["id"]))
        return json_response({"same": first is second and first is not None})


    @routes.get("/expired/{id}", name="expired")
    async def expired(request: web.Request) -> web.Response:
        session = db_session(request)
        key = int(request.match_info["id"])
        found = await session.get(Book, key)
        session.expire(found)
        await session.execute(Book.__table__.update().where(Book.id == key).values(title="changed"))
        again = await session.get(Book, key)  # read again: the identity map's object
        return json_response({"same": again is found, "title": again.title})


    @routes.get("/reference/{id}", name="reference")
    async def reference(request: web.Request) -> web.Response:
        # SQLAlchemy's own session and get(), for comparison.
        async with AsyncSession(database_of(request).engine) as session:
            found = await session.get(Book, int(request.match_info["id"]))
        return json_response({"title": found.title})


    @routes.get("/other-calls", name="other_calls")
    async def other_calls(request: web.Request) -> web.Response:
        session = db_session(request)
        shelf = await session.get(Shelf, 1, options=[selectinload(Shelf.books)])
        locked = await session.get(Book, 2, with_for_update=True)
        loan = await session.get(Loan, (1, "ada"))
        item = await session.get(Item, 1)
        missing = await session.get(Book, 99)
        return json_response(
            {
                "books": [book.title for book in shelf.books],
                "locked": locked.title,
                "loan": [loan.book_id, loan.reader],
                "item": [type(item).__name__, await item.awaitable_attrs.region],
                "missing": missing,
            }
        )
"""

FILES = {"PKG/lib/__init__.py": "", "PKG/lib/models.py": MODELS, "PKG/lib/routes.py": ROUTES}

Client = TestClient[web.Request, web.Application]


@pytest.fixture
def project(make_project: ProjectFactory, database: TestDatabase) -> Path:
    return make_project(FILES, apps=["lib"])


async def fill(client: Client) -> None:
    async with database_of(client.app).engine.begin() as connection:
        for statement in (
            "INSERT INTO lib_shelf (id, name) VALUES (1, 'poetry')",
            "INSERT INTO lib_book (id, shelf_id, title) VALUES (1, 1, 'Odes'), (2, 1, 'Elegies')",
            "INSERT INTO lib_loan (book_id, reader) VALUES (1, 'ada')",
            "INSERT INTO lib_item (id, kind) VALUES (1, 'map')",
            "INSERT INTO lib_map (id, region) VALUES (1, 'Alps')",
        ):
            await connection.execute(text(statement))


@contextmanager
def statements(client: Client) -> Iterator[list[str]]:
    """The SQL the site's engine runs while the block runs."""
    ran: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        ran.append(statement)

    engine = database_of(client.app).engine.sync_engine
    event.listen(engine, "before_cursor_execute", before)
    try:
        yield ran
    finally:
        event.remove(engine, "before_cursor_execute", before)


async def test_get_runs_the_sql_of_sqlalchemys_get(project: Path) -> None:
    async with site_with_tables(project) as client:
        await fill(client)
        with statements(client) as ours:
            resp = await client.get("/lib/book/1")
            assert await resp.json() == {"title": "Odes", "session": "SiteSession"}
        with statements(client) as reference:
            resp = await client.get("/lib/reference/1")
            assert await resp.json() == {"title": "Odes"}
        assert ours == reference
        assert len(ours) == 1
        assert (await client.get("/lib/book/99")).status == 404
        assert (await client.get("/lib/book/abc")).status == 404


async def test_the_identity_map_answers_a_second_get(project: Path) -> None:
    async with site_with_tables(project) as client:
        await fill(client)
        with statements(client) as ran:
            assert await (await client.get("/lib/twice/1")).json() == {"same": True}
        assert len(ran) == 1


async def test_an_expired_object_is_read_again(project: Path) -> None:
    async with site_with_tables(project) as client:
        await fill(client)
        resp = await client.get("/lib/expired/2")
        assert await resp.json() == {"same": True, "title": "changed"}


async def test_other_calls_are_sqlalchemys(project: Path) -> None:
    async with site_with_tables(project) as client:
        await fill(client)
        resp = await client.get("/lib/other-calls")
        assert resp.status == 200, await resp.text()
        assert await resp.json() == {
            "books": ["Odes", "Elegies"],
            "locked": "Elegies",
            "loan": [1, "ada"],
            "item": ["Map", "Alps"],
            "missing": None,
        }
