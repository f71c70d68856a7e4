"""The Model base: repr, UTC timestamps, naming conventions, the site's own tables."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import inspect, select

from aiosite import load_settings
from aiosite.apps import AppRegistry, ensure_importable, load_apps
from aiosite.db.models import models_of, site_metadata
from tests.conftest import ProjectFactory, TestDatabase

MODELS = """
    from datetime import datetime

    from sqlalchemy import ForeignKey, String
    from sqlalchemy.orm import Mapped, mapped_column, relationship

    from aiosite import Model, Timestamped


    class Author(Model):
        __tablename__ = "PKG_author"

        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(50), unique=True)
        bio: Mapped[str] = mapped_column(default="")
        born: Mapped[datetime | None]


    class Book(Timestamped, Model):
        __tablename__ = "PKG_book"

        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str]
        author_id: Mapped[int] = mapped_column(ForeignKey("PKG_author.id"))
        author: Mapped[Author] = relationship()
"""

OTHER_MODELS = """
    from sqlalchemy.orm import Mapped, mapped_column

    from aiosite import Model


    class Unlisted(Model):
        __tablename__ = "PKG_unlisted"

        id: Mapped[int] = mapped_column(primary_key=True)
"""


@pytest.fixture
def project(make_project: ProjectFactory, database: TestDatabase) -> Path:
    return make_project(
        {
            "PKG/library/__init__.py": 'from aiosite import App\napp = App("library")\n',
            "PKG/library/models.py": MODELS,
            "PKG/other/__init__.py": "",
            "PKG/other/models.py": OTHER_MODELS,
        },
        apps=["library"],
        with_home=False,
    )


def registry_of(root: Path) -> AppRegistry:
    ensure_importable(root)
    return load_apps(load_settings(root, "test"))


async def test_models_round_trip_with_utc_timestamps(project: Path, database: TestDatabase) -> None:
    registry = registry_of(project)
    models = models_of(registry)
    assert sorted(models) == ["library.Author", "library.Book"]
    author_cls, book_cls = models["library.Author"], models["library.Book"]
    db = database.open()
    try:
        async with db.engine.begin() as connection:
            await connection.run_sync(site_metadata(registry).create_all)
        paris = timezone(timedelta(hours=1))
        async with db.transaction() as session:
            author = author_cls(name="Ann", born=datetime(1990, 5, 1, 12, 0, tzinfo=paris))
            naive = author_cls(name="Bo", born=datetime(1991, 1, 1, 8, 30))
            session.add_all([author, naive])
            session.add(book_cls(title="Async", author=author))
        async with db.session() as session:
            ann = (await session.scalars(select(author_cls).filter_by(name="Ann"))).one()
            bo = (await session.scalars(select(author_cls).filter_by(name="Bo"))).one()
            book = (await session.scalars(select(book_cls))).one()
            # Aware UTC on every database; naive values were taken as UTC.
            assert ann.born == datetime(1990, 5, 1, 11, 0, tzinfo=UTC)
            assert ann.born.tzinfo is UTC
            assert bo.born == datetime(1991, 1, 1, 8, 30, tzinfo=UTC)
            assert book.created.tzinfo is UTC
            assert abs(book.created - datetime.now(UTC)) < timedelta(minutes=1)
            assert book.updated == book.created or book.updated >= book.created
            first_update = book.updated
            assert repr(ann) == "<Author id=1 name='Ann' bio=''>"
            # Only loaded values show, so a repr never runs a query.
            assert repr(book).startswith("<Book id=1 title='Async'")
            assert "created" not in repr(book)
            await asyncio.sleep(0.01)
            book.title = "Async, 2nd edition"
            await session.commit()
            assert book.updated > first_update
    finally:
        await db.dispose()


def test_site_metadata_holds_only_the_listed_apps_tables(project: Path) -> None:
    registry = registry_of(project)
    __import__(f"{project.name}.other.models")  # imported, but not listed in apps
    metadata = site_metadata(registry)
    assert sorted(metadata.tables) == [f"{project.name}_author", f"{project.name}_book"]
    book = metadata.tables[f"{project.name}_book"]
    # Deterministic names, which Alembic needs to alter constraints later.
    names = {c.name for c in book.constraints}
    assert f"pk_{project.name}_book" in names
    assert f"fk_{project.name}_book_author_id_{project.name}_author" in names
    author = metadata.tables[f"{project.name}_author"]
    assert f"uq_{project.name}_author_name" in {c.name for c in author.constraints}


async def test_created_tables_carry_the_convention_names(
    project: Path, database: TestDatabase
) -> None:
    registry = registry_of(project)
    db = database.open()
    try:
        async with db.engine.begin() as connection:
            await connection.run_sync(site_metadata(registry).create_all)
            uniques = await connection.run_sync(
                lambda sync: inspect(sync).get_unique_constraints(f"{project.name}_author")
            )
        assert [u["name"] for u in uniques] == [f"uq_{project.name}_author_name"]
    finally:
        await db.dispose()
