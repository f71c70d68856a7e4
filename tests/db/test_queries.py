"""get_or_404 and paginate through HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import insert

from aiosite import Page, database_of
from aiosite.apps import APPS
from aiosite.db.models import site_metadata
from tests.conftest import ProjectFactory, TestDatabase, site_client

MODELS = """
    from __future__ import annotations

    from sqlalchemy import ForeignKey, String
    from sqlalchemy.orm import Mapped, mapped_column, relationship

    from aiosite import Model


    class Label(Model):
        __tablename__ = "PKG_label"

        code: Mapped[str] = mapped_column(String(10), primary_key=True)
        items: Mapped[list[Item]] = relationship(lazy="raise")


    class Item(Model):
        __tablename__ = "PKG_item"

        id: Mapped[int] = mapped_column(primary_key=True)
        slug: Mapped[str] = mapped_column(String(40), unique=True)
        rank: Mapped[int]
        label_code: Mapped[str | None] = mapped_column(ForeignKey("PKG_label.code"))
"""

ROUTES = """
    from aiohttp import web
    from sqlalchemy import select
    from sqlalchemy.orm import joinedload, selectinload

    from aiosite import Routes, db_session, get_or_404, json_response, paginate

    from .models import Item, Label

    routes = Routes()


    @routes.get("/by-id/{id}", name="by_id")
    async def by_id(request: web.Request) -> web.Response:
        item = await get_or_404(db_session(request), Item, request.match_info["id"])
        return json_response({"slug": item.slug})


    @routes.get("/by-slug/{slug}", name="by_slug")
    async def by_slug(request: web.Request) -> web.Response:
        item = await get_or_404(db_session(request), Item, slug=request.match_info["slug"])
        return json_response({"id": item.id})


    @routes.get("/label/{code}", name="label")
    async def label(request: web.Request) -> web.Response:
        found = await get_or_404(
            db_session(request),
            Label,
            request.match_info["code"],
            options=[selectinload(Label.items)],
        )
        return json_response({"code": found.code, "items": [i.slug for i in found.items]})


    @routes.get("/labels", name="labels")
    async def labels(request: web.Request) -> web.Response:
        # joinedload of a collection: the rows repeat per item until made unique.
        session = db_session(request)
        joined = [joinedload(Label.items)]
        page = await paginate(session, select(Label).options(*joined))
        red = await get_or_404(session, Label, code="red", options=joined)
        return json_response({"labels": [l.code for l in page], "red": len(red.items)})


    @routes.get("/label-by-code/{code}", name="label_by_code")
    async def label_by_code(request: web.Request) -> web.Response:
        found = await get_or_404(
            db_session(request),
            Label,
            code=request.match_info["code"],
            options=[selectinload(Label.items)],
        )
        return json_response({"items": len(found.items)})


    @routes.get("/list", name="list", api=True)
    async def listing(request: web.Request) -> web.Response:
        statement = select(Item).order_by(Item.rank)
        if "columns" in request.query:
            statement = select(Item.slug, Item.rank).order_by(Item.rank)
        page = await paginate(
            db_session(request), statement, page=request.query.get("page"), per_page=3
        )
        items = [row.slug for row in page]
        return json_response(
            {
                "items": items,
                "number": page.number,
                "pages": page.pages,
                "total": page.total,
                "has_next": page.has_next,
                "has_previous": page.has_previous,
                "next": page.next_number,
                "previous": page.previous_number,
                "range": [page.start_index, page.end_index],
            }
        )
"""


@pytest.fixture
def project(make_project: ProjectFactory, database: TestDatabase) -> Path:
    files = {
        "PKG/items/__init__.py": "",
        "PKG/items/models.py": MODELS,
        "PKG/items/routes.py": ROUTES,
    }
    return make_project(files, apps=["items"], with_home=False)


async def fill(client: TestClient[web.Request, web.Application], count: int) -> None:
    """Create the tables, ``count`` items and one label."""
    app = client.app
    metadata = site_metadata(app[APPS])
    async with database_of(app).engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
        table = metadata.tables[next(k for k in metadata.tables if k.endswith("_item"))]
        labels = metadata.tables[next(k for k in metadata.tables if k.endswith("_label"))]
        await connection.execute(insert(labels), [{"code": "red"}])
        rows = [
            {"id": n, "slug": f"item-{n}", "rank": n, "label_code": "red" if n == 1 else None}
            for n in range(1, count + 1)
        ]
        if rows:
            await connection.execute(insert(table), rows)


async def test_get_or_404_by_primary_key_and_by_filters(project: Path) -> None:
    async with site_client(project) as client:
        await fill(client, 2)
        assert await (await client.get("/items/by-id/2")).json() == {"slug": "item-2"}
        assert await (await client.get("/items/by-slug/item-1")).json() == {"id": 1}
        label = await (await client.get("/items/label/red")).json()
        assert label == {"code": "red", "items": ["item-1"]}
        assert await (await client.get("/items/label-by-code/red")).json() == {"items": 1}
        assert await (await client.get("/items/labels")).json() == {"labels": ["red"], "red": 1}
        too_big = "/items/by-id/99999999999"  # more than an INTEGER column holds
        for path in ("/items/by-id/99", "/items/by-id/abc", too_big, "/items/by-slug/none"):
            resp = await client.get(path, headers={"Accept": "application/json"})
            assert resp.status == 404, path
            body = await resp.json()
            assert body["error"]["message"] == "No Item matches the given query."
        resp = await client.get("/items/label/blue", headers={"Accept": "application/json"})
        assert resp.status == 404
        assert (await resp.json())["error"]["message"] == "No Label matches the given query."


async def test_paginate_pages_through_a_query(project: Path) -> None:
    async with site_client(project) as client:
        await fill(client, 7)
        first = await (await client.get("/items/list")).json()
        assert first == {
            "items": ["item-1", "item-2", "item-3"],
            "number": 1,
            "pages": 3,
            "total": 7,
            "has_next": True,
            "has_previous": False,
            "next": 2,
            "previous": None,
            "range": [1, 3],
        }
        last = await (await client.get("/items/list", params={"page": "3"})).json()
        assert last["items"] == ["item-7"]
        assert (last["has_next"], last["previous"], last["range"]) == (False, 2, [7, 7])
        columns = await (await client.get("/items/list?columns&page=2")).json()
        assert columns["items"] == ["item-4", "item-5", "item-6"]
        assert await (await client.get("/items/list", params={"page": "last"})).json() == last


@pytest.mark.parametrize(
    ("page", "message"),
    [
        ("4", "There is no page 4; the last page is 3."),
        ("0", "There is no page 0; pages start at 1."),
        ("two", "'two' is not a page number."),
    ],
)
async def test_a_page_that_does_not_exist_is_a_404(project: Path, page: str, message: str) -> None:
    async with site_client(project) as client:
        await fill(client, 7)
        resp = await client.get("/items/list", params={"page": page})
        assert resp.status == 404
        assert (await resp.json())["error"]["message"] == message


async def test_an_empty_query_has_one_empty_page(project: Path) -> None:
    async with site_client(project) as client:
        await fill(client, 0)
        body = await (await client.get("/items/list")).json()
        assert (body["items"], body["pages"], body["total"], body["range"]) == ([], 1, 0, [0, 0])


@pytest.mark.parametrize(
    ("number", "pages", "expected"),
    [
        (1, 1, [1]),
        (1, 5, [1, 2, 3, 4, 5]),
        (1, 20, [1, 2, 3, None, 20]),
        (10, 20, [1, None, 8, 9, 10, 11, 12, None, 20]),
        (5, 20, [1, 2, 3, 4, 5, 6, 7, None, 20]),
        (20, 20, [1, None, 18, 19, 20]),
    ],
)
def test_page_numbers_leave_out_runs_of_pages(
    number: int, pages: int, expected: list[int | None]
) -> None:
    page = Page(items=[object()], number=number, per_page=10, total=pages * 10)
    assert page.pages == pages
    assert page.numbers == expected
