"""Fixture files loaded into real SQLite and PostgreSQL databases: idempotent, ordered by
foreign keys, all or nothing, with one-line errors."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from aiosite import load_settings
from aiosite.apps import AppRegistry, ensure_importable, load_apps
from aiosite.db.engine import Database
from aiosite.db.fixtures import (
    FixtureError,
    FixtureReport,
    load_fixture_files,
    load_fixtures,
)
from aiosite.db.models import models_of, site_metadata
from aiosite.exceptions import CommandError
from tests.conftest import ProjectFactory, TestDatabase

MODELS = """
    import uuid
    from datetime import date, datetime, time
    from decimal import Decimal

    from sqlalchemy import Column, ForeignKey, Numeric, String, Table, Text
    from sqlalchemy.orm import Mapped, mapped_column, relationship

    from aiosite import Model

    post_tags = Table(
        "blog_post_tags",
        Model.metadata,
        Column("post_id", ForeignKey("blog_post.id"), primary_key=True),
        Column("tag_id", ForeignKey("blog_tag.id"), primary_key=True),
    )


    class Tag(Model):
        __tablename__ = "blog_tag"

        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(50))
        slug: Mapped[str] = mapped_column(String(50), unique=True)
        parent_id: Mapped[int | None] = mapped_column(ForeignKey("blog_tag.id"))
        parent: Mapped["Tag | None"] = relationship(lambda: Tag, remote_side=lambda: Tag.id)


    class Post(Model):
        __tablename__ = "blog_post"

        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str] = mapped_column(String(200))
        slug: Mapped[str] = mapped_column(String(200), unique=True)
        created: Mapped[datetime | None]
        published: Mapped[bool] = mapped_column(default=False)
        tags: Mapped[list[Tag]] = relationship(lambda: Tag, secondary=post_tags)
        comments: Mapped[list["Comment"]] = relationship(
            lambda: Comment, back_populates="post", order_by=lambda: Comment.id
        )


    class Comment(Model):
        __tablename__ = "blog_comment"

        id: Mapped[int] = mapped_column(primary_key=True)
        post_id: Mapped[int] = mapped_column(ForeignKey("blog_post.id"))
        author: Mapped[str] = mapped_column(String(50))
        body: Mapped[str] = mapped_column(Text)
        post: Mapped[Post] = relationship(lambda: Post, back_populates="comments")


    class Rating(Model):
        # Every column type fixtures convert, under a two-column primary key.

        __tablename__ = "blog_rating"

        post_id: Mapped[int] = mapped_column(ForeignKey("blog_post.id"), primary_key=True)
        voter: Mapped[str] = mapped_column(String(50), primary_key=True)
        score: Mapped[Decimal] = mapped_column(Numeric(4, 2))
        weight: Mapped[float | None]
        day: Mapped[date | None]
        at: Mapped[time | None]
        token: Mapped[uuid.UUID | None]
        helpful: Mapped[bool] = mapped_column(default=True)
        post: Mapped[Post] = relationship(lambda: Post)
"""

FILES = {
    "PKG/blog/__init__.py": 'from aiosite import App\n\napp = App("blog")\n',
    "PKG/blog/models.py": MODELS,
}

# In reverse order on purpose: comments need posts, the posts' tags need posts and tags.
DEMO = """\
blog.Comment:
  - {id: 1, post_id: 1, author: Ann, body: Nice}
  - {id: 2, post: 1, author: Bob, body: Agreed}
blog.Post:
  - id: 1
    title: Hello
    slug: hello
    created: 2026-11-01T10:00:00Z
    tags: [1, 2]
blog.Tag:
  - {id: 1, name: aiohttp, slug: aiohttp}
  - {id: 2, name: Python, slug: python}
"""

TABLES = ("blog_post_tags", "blog_comment", "blog_rating", "blog_post", "blog_tag")


@dataclass
class Blog:
    root: Path
    registry: AppRegistry
    db: Database

    def write(self, name: str, content: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        return path

    async def load(self, *files: tuple[str, str]) -> FixtureReport:
        paths = [self.write(name, content) for name, content in files]
        return await load_fixture_files(self.db, self.registry, paths)

    async def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        async with self.db.engine.connect() as connection:
            return [tuple(row) for row in await connection.execute(text(sql))]

    async def run(self, sql: str) -> None:
        async with self.db.engine.begin() as connection:
            await connection.execute(text(sql))

    async def counts(self) -> dict[str, int]:
        return {
            table: (await self.fetch(f"SELECT COUNT(*) FROM {table}"))[0][0]  # noqa: S608
            for table in TABLES
        }

    def model(self, key: str) -> Any:
        return models_of(self.registry)[key]


@pytest.fixture
async def blog(make_project: ProjectFactory, database: TestDatabase) -> AsyncIterator[Blog]:
    root = make_project(FILES, apps=["blog"], with_home=False)
    ensure_importable(root)
    registry = load_apps(load_settings(root, "test"))
    db = database.open()
    async with db.engine.begin() as connection:
        await connection.run_sync(site_metadata(registry).create_all)
    try:
        yield Blog(root, registry, db)
    finally:
        await db.dispose()


def summary(report: FixtureReport) -> dict[str, tuple[int, int, int]]:
    return {
        key: (report.created[key], report.updated[key], report.unchanged[key])
        for key in report.created
    }


async def test_rows_load_in_foreign_key_order_with_their_relationships(blog: Blog) -> None:
    report = await blog.load(("fixtures/demo.yaml", DEMO))

    order = list(report.created)
    assert sorted(order) == ["blog.Comment", "blog.Post", "blog.Tag"]
    assert order.index("blog.Post") < order.index("blog.Comment")
    assert summary(report) == {
        "blog.Tag": (2, 0, 0),
        "blog.Post": (1, 0, 0),
        "blog.Comment": (2, 0, 0),
    }
    assert report.total_created == 5
    assert await blog.fetch("SELECT id, title, slug, published FROM blog_post") == [
        (1, "Hello", "hello", False)
    ]
    assert await blog.fetch("SELECT post_id, tag_id FROM blog_post_tags ORDER BY tag_id") == [
        (1, 1),
        (1, 2),
    ]
    assert await blog.fetch("SELECT id, post_id, author FROM blog_comment ORDER BY id") == [
        (1, 1, "Ann"),
        (2, 1, "Bob"),
    ]
    Post = blog.model("blog.Post")
    async with blog.db.session() as session:
        post = await session.get(Post, 1)
        assert post is not None
        assert post.created == datetime(2026, 11, 1, 10, tzinfo=UTC)


async def test_loading_again_creates_nothing_and_restores_changed_rows(blog: Blog) -> None:
    await blog.load(("fixtures/demo.yaml", DEMO))

    again = await blog.load(("fixtures/demo.yaml", DEMO))
    assert summary(again) == {
        "blog.Tag": (0, 0, 2),
        "blog.Post": (0, 0, 1),
        "blog.Comment": (0, 0, 2),
    }
    assert again.total_created == again.total_updated == 0

    await blog.run("UPDATE blog_post SET title = 'Edited', published = true WHERE id = 1")
    await blog.run("DELETE FROM blog_post_tags WHERE tag_id = 2")
    await blog.run("UPDATE blog_tag SET name = 'renamed' WHERE id = 1")
    await blog.run("INSERT INTO blog_tag (id, name, slug) VALUES (3, 'extra', 'extra')")
    await blog.run("INSERT INTO blog_post_tags (post_id, tag_id) VALUES (1, 3)")

    restored = await blog.load(("fixtures/demo.yaml", DEMO))
    assert summary(restored) == {
        "blog.Tag": (0, 1, 1),
        "blog.Post": (0, 1, 0),
        "blog.Comment": (0, 0, 2),
    }
    # Values the fixture gives are restored (a to-many list is the whole collection);
    # a column it leaves out keeps its value, and rows it does not name are left alone.
    assert await blog.fetch("SELECT title, published FROM blog_post") == [("Hello", True)]
    assert await blog.fetch("SELECT tag_id FROM blog_post_tags ORDER BY tag_id") == [(1,), (2,)]
    assert await blog.fetch("SELECT id, name FROM blog_tag ORDER BY id") == [
        (1, "aiohttp"),
        (2, "Python"),
        (3, "extra"),
    ]


async def test_several_files_load_in_foreign_key_order_whatever_their_order(blog: Blog) -> None:
    comments = '{"blog.Comment": [{"id": 7, "post_id": 3, "author": "Cy", "body": "Hi"}]}'
    posts = "blog.Post:\n  - {id: 3, title: Third, slug: third, tags: [5]}\n"
    tags = "blog.Tag:\n  - {id: 5, name: Web, slug: web}\n"

    report = await blog.load(
        ("fixtures/comments.json", comments),
        ("fixtures/posts.yaml", posts),
        ("fixtures/tags.yml", tags),
    )

    assert summary(report) == {
        "blog.Tag": (1, 0, 0),
        "blog.Post": (1, 0, 0),
        "blog.Comment": (1, 0, 0),
    }
    assert await blog.fetch("SELECT post_id, tag_id FROM blog_post_tags") == [(3, 5)]
    assert await blog.fetch("SELECT id, post_id FROM blog_comment") == [(7, 3)]


async def test_a_to_many_relationship_to_a_model_loaded_later(blog: Blog) -> None:
    # Post.comments names comments that are inserted after the post (Comment needs Post);
    # the list moves comment 3 from post 1 to post 2.
    fixture = """\
blog.Post:
  - {id: 1, title: One, slug: one, comments: [1, 2]}
  - {id: 2, title: Two, slug: two, comments: [3]}
blog.Comment:
  - {id: 1, post_id: 1, author: Ann, body: first}
  - {id: 2, post_id: 1, author: Bob, body: second}
  - {id: 3, post_id: 1, author: Cy, body: third}
"""
    report = await blog.load(("fixtures/comments.yaml", fixture))

    assert summary(report) == {"blog.Post": (2, 0, 0), "blog.Comment": (3, 0, 0)}
    expected = [(1, 1), (2, 1), (3, 2)]
    assert await blog.fetch("SELECT id, post_id FROM blog_comment ORDER BY id") == expected
    await blog.load(("fixtures/comments.yaml", fixture))
    assert await blog.fetch("SELECT id, post_id FROM blog_comment ORDER BY id") == expected


async def test_an_orphan_left_by_a_to_many_list_is_an_error(blog: Blog) -> None:
    fixture = """\
blog.Post:
  - {id: 1, title: One, slug: one, comments: [1]}
blog.Comment:
  - {id: 1, post_id: 1, author: Ann, body: first}
  - {id: 2, post_id: 1, author: Bob, body: second}
"""
    with pytest.raises(FixtureError) as caught:
        await blog.load(("fixtures/orphan.yaml", fixture))
    assert caught.match(
        r"(?i)orphan\.yaml: the database refused the relationships blog\.Post\.comments: "
        r".*(not null|null value)"
    )
    assert await blog.counts() == dict.fromkeys(TABLES, 0)


async def test_a_relationship_to_a_row_of_the_same_model_further_down(blog: Blog) -> None:
    fixture = """\
blog.Tag:
  - {id: 1, name: asyncio, slug: asyncio, parent: 2}
  - {id: 2, name: Python, slug: python}
  - {id: 3, name: aiohttp, slug: aiohttp, parent_id: 1}
"""
    report = await blog.load(("fixtures/tags.yaml", fixture))

    assert summary(report) == {"blog.Tag": (3, 0, 0)}
    expected = [(1, 2), (2, None), (3, 1)]
    assert await blog.fetch("SELECT id, parent_id FROM blog_tag ORDER BY id") == expected
    await blog.run("UPDATE blog_tag SET parent_id = NULL")
    assert summary(await blog.load(("fixtures/tags.yaml", fixture))) == {"blog.Tag": (0, 2, 1)}
    assert await blog.fetch("SELECT id, parent_id FROM blog_tag ORDER BY id") == expected


async def test_rows_added_after_seeding_get_new_keys(blog: Blog) -> None:
    # Keys 1 and 2 are what a fresh sequence would hand out next.
    tags = "blog.Tag:\n" + "".join(f"  - {{id: {i}, name: t{i}, slug: t{i}}}\n" for i in (1, 2, 41))
    await blog.load(("fixtures/tags.yaml", tags))

    await blog.run("INSERT INTO blog_tag (name, slug) VALUES ('b', 'b')")
    Tag = blog.model("blog.Tag")
    async with blog.db.transaction() as session:
        tag = Tag(name="c", slug="c")
        session.add(tag)
        await session.flush()
        assert tag.id == 43
    assert await blog.fetch("SELECT id, slug FROM blog_tag WHERE id > 40 ORDER BY id") == [
        (41, "t41"),
        (42, "b"),
        (43, "c"),
    ]
    # Loading again keeps the sequence after the largest key.
    await blog.load(("fixtures/tags.yaml", tags))
    await blog.run("INSERT INTO blog_tag (name, slug) VALUES ('d', 'd')")
    assert await blog.fetch("SELECT id FROM blog_tag WHERE slug = 'd'") == [(44,)]


async def test_a_missing_table_names_the_model(blog: Blog) -> None:
    await blog.run("DROP TABLE blog_comment")
    with pytest.raises(FixtureError) as caught:
        await blog.load(("fixtures/demo.yaml", DEMO))
    assert caught.match(
        r"(?i)demo\.yaml: blog\.Comment: cannot read the existing rows: .*"
        r"(no such table|does not exist)"
    )
    assert await blog.fetch("SELECT COUNT(*) FROM blog_tag") == [(0,)]


async def test_datetimes_in_yaml_and_json_are_stored_in_utc(blog: Blog) -> None:
    yaml_posts = """\
blog.Post:
  - {id: 1, title: a, slug: a, created: 2026-11-01T10:00:00Z}
  - {id: 2, title: b, slug: b, created: 2026-11-01 10:00:00}
  - {id: 3, title: c, slug: c, created: 2026-11-01T12:00:00+02:00}
  - {id: 4, title: d, slug: d, created: "2026-11-01T10:00:00"}
  - {id: 5, title: e, slug: e, created: null}
"""
    json_posts = (
        '{"blog.Post": [{"id": 6, "title": "f", "slug": "f",\n'
        '"created": "2026-11-01T11:00:00+01:00"}]}'
    )
    files = (("fixtures/a.yaml", yaml_posts), ("fixtures/b.json", json_posts))
    await blog.load(*files)

    Post = blog.model("blog.Post")
    ten = datetime(2026, 11, 1, 10, tzinfo=UTC)
    async with blog.db.session() as session:
        created = dict((await session.execute(select(Post.id, Post.created))).all())
    assert created == {1: ten, 2: ten, 3: ten, 4: ten, 5: None, 6: ten}
    # Naive and offset values compare equal to what was stored: nothing to update.
    again = await blog.load(*files)
    assert again.total_updated == again.total_created == 0


async def test_values_are_converted_to_their_column_types(blog: Blog) -> None:
    fixture = """\
blog.Post:
  - {id: 1, title: a, slug: a}
blog.Rating:
  - {post_id: 1, voter: ann, score: 4.5, weight: 2, day: 2026-11-01, at: "10:30",
     token: 12345678-1234-5678-1234-567812345678, helpful: false}
  - {post_id: 1, voter: bob, score: "3.25", day: "2026-11-02", at: "08:00:05"}
"""
    report = await blog.load(("fixtures/ratings.yaml", fixture))
    assert report.created == {"blog.Post": 1, "blog.Rating": 2}

    Rating = blog.model("blog.Rating")
    async with blog.db.session() as session:
        ann = await session.get(Rating, (1, "ann"))
        bob = await session.get(Rating, (1, "bob"))
    assert ann is not None
    assert bob is not None
    assert (ann.score, ann.weight, ann.helpful) == (Decimal("4.5"), 2.0, False)
    assert (ann.day, ann.at) == (date(2026, 11, 1), time(10, 30))
    assert ann.token == uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert (bob.score, bob.weight, bob.helpful) == (Decimal("3.25"), None, True)
    assert (bob.day, bob.at) == (date(2026, 11, 2), time(8, 0, 5))
    # Values read back compare equal to the fixture's: nothing to update the second time.
    again = await blog.load(("fixtures/ratings.yaml", fixture))
    assert summary(again) == {"blog.Post": (0, 0, 1), "blog.Rating": (0, 0, 2)}
    edited = fixture.replace("score: 4.5", "score: 4.75")
    assert summary(await blog.load(("fixtures/ratings.yaml", edited)))["blog.Rating"] == (0, 1, 1)


async def test_a_site_without_models(
    blog: Blog, make_project: ProjectFactory, database: TestDatabase
) -> None:
    root = make_project()
    ensure_importable(root)
    registry = load_apps(load_settings(root, "test"))
    with pytest.raises(FixtureError, match=r"^x: unknown model 'blog\.Tag': the site's apps "):
        async with blog.db.transaction() as session:
            await load_fixtures(session, registry, {"blog.Tag": []}, source="x")


async def test_load_fixtures_uses_the_callers_session(blog: Blog) -> None:
    data = {"blog.Tag": [{"id": 1, "name": "x", "slug": "x"}]}
    async with blog.db.transaction() as session:
        report = await load_fixtures(session, blog.registry, data, source="inline")
        assert report.created == {"blog.Tag": 1}
    assert await blog.fetch("SELECT slug FROM blog_tag") == [("x",)]

    with pytest.raises(FixtureError, match=r"^inline: blog\.Tag row 1 \(id=1\): unknown"):
        async with blog.db.transaction() as session:
            await load_fixtures(
                session, blog.registry, {"blog.Tag": [{"id": 1, "nme": "y"}]}, source="inline"
            )


# Rows that load before the bad file's error, and must be rolled back with it.
GOOD = "blog.Tag:\n  - {id: 100, name: g, slug: g}\nblog.Post:\n  - {id: 100, title: g, slug: g}\n"
RATING = (
    "blog.Post:\n  - {id: 1, title: a, slug: a}\n"
    "blog.Rating:\n  - {post_id: 1, voter: ann, score: 1"
)
TAGS_OK = "blog.Tag:\n  - {id: 1, name: a, slug: a}\n  - {id: 2, name: b, slug: b}\n"

ERRORS = {
    "bad YAML": (
        "blog.Tag:\n  - {id: 1, name: a\n",
        r"^\S*bad\.yaml:3:1: invalid YAML: ",
    ),
    "impossible YAML date": (
        "blog.Rating:\n  - {post_id: 1, voter: a, score: 1, day: 2026-13-01}\n",
        r"bad\.yaml: invalid YAML: month must be in 1\.\.12$",
    ),
    "bad JSON": ('{"blog.Tag": [\n  {"id": 1,}\n]}', r"^\S*bad\.json:2:12: invalid JSON: "),
    "not a mapping": (
        "- blog.Tag\n",
        r"bad\.yaml: expected a mapping of '<app>\.<Model>': \[rows\] at the top level, "
        r"got a list$",
    ),
    "unknown model": (
        "blog.Tags: []\n",
        r"bad\.yaml: unknown model 'blog\.Tags'; did you mean 'blog\.Tag'\? "
        r"\(models are keyed '<app>\.<Model>': blog\.Comment, blog\.Post, blog\.Rating, "
        r"blog\.Tag\)$",
    ),
    "rows not a list": (
        "blog.Tag: {id: 1}\n",
        r"bad\.yaml: blog\.Tag: expected a list of rows, got a mapping$",
    ),
    "row not a mapping": (
        "blog.Tag: [1]\n",
        r"bad\.yaml: blog\.Tag row 1: expected a mapping of attribute: value, got int$",
    ),
    "no primary key": (
        TAGS_OK + "  - {name: c, slug: c}\n",
        r"bad\.yaml: blog\.Tag row 3: no primary key 'id'; every row needs it",
    ),
    "unknown attribute": (
        "blog.Post:\n  - {id: 1, titel: x, slug: x}\n",
        r"bad\.yaml: blog\.Post row 1 \(id=1\): unknown attribute 'titel'; did you mean 'title'\?$",
    ),
    "unknown attribute, nothing close": (
        "blog.Tag:\n  - {id: 1, colour: red}\n",
        r"blog\.Tag row 1 \(id=1\): unknown attribute 'colour' "
        r"\(attributes: id, name, slug, parent_id, parent\)$",
    ),
    "wrong type": (
        "blog.Tag:\n  - {id: 1, name: 5, slug: five}\n",
        r"blog\.Tag row 1 \(id=1\): name: expected a string \(quote it\), got int 5$",
    ),
    "wrong key type": (
        "blog.Tag:\n  - {id: one, name: a, slug: a}\n",
        r"blog\.Tag row 1: id: expected an integer, got a string 'one'$",
    ),
    "bad datetime": (
        "blog.Post:\n  - {id: 1, title: a, slug: a, created: yesterday}\n",
        r"blog\.Post row 1 \(id=1\): created: expected a date and time .*got a string 'yesterday'$",
    ),
    "to-many not a list": (
        TAGS_OK + "blog.Post:\n  - {id: 1, title: a, slug: a, tags: 1}\n",
        r"blog\.Post row 1 \(id=1\): tags: expected a list of primary keys of Tag, got int$",
    ),
    "not a boolean": (
        RATING + ", helpful: maybe}\n",
        r"blog\.Rating row 1 \(post_id=1, voter='ann'\): helpful: expected true or false, "
        r"got a string 'maybe'$",
    ),
    "not a date": (
        RATING + ', day: "2026-13-01"}\n',
        r"blog\.Rating row 1 \(post_id=1, voter='ann'\): day: expected a date \(YYYY-MM-DD\), "
        r"got a string '2026-13-01'$",
    ),
    "not a number": (
        RATING + ", weight: heavy}\n",
        r"blog\.Rating row 1 \(post_id=1, voter='ann'\): weight: expected a number",
    ),
    "part of a two-column key": (
        RATING + "}\n  - {post_id: 1, score: 2}\n",
        r"bad\.yaml: blog\.Rating row 2: no primary key 'voter'; every row needs it",
    ),
    "related key twice": (
        TAGS_OK + "blog.Post:\n  - {id: 1, title: a, slug: a, tags: [1, 2, 1]}\n",
        r"blog\.Post row 1 \(id=1\): tags: 1 is listed twice$",
    ),
    "duplicate primary key": (
        TAGS_OK + "  - {id: 1, name: c, slug: c}\n",
        r"bad\.yaml: blog\.Tag row 3 \(id=1\): the same primary key is already given in "
        r"\S*bad\.yaml row 1$",
    ),
    "missing related row": (
        TAGS_OK + "blog.Post:\n  - {id: 1, title: a, slug: a, tags: [1, 99]}\n",
        r"bad\.yaml: blog\.Post row 1 \(id=1\): tags: no blog\.Tag with primary key 99$",
    ),
    "missing to-one row": (
        "blog.Comment:\n  - {id: 1, post: 8, author: a, body: b}\n",
        r"blog\.Comment row 1 \(id=1\): post: no blog\.Post with primary key 8$",
    ),
    "unique violation": (
        TAGS_OK + "  - {id: 3, name: c, slug: a}\n",
        r"(?i)bad\.yaml: blog\.Tag row 3 \(id=3\): the database refused the row: .*unique",
    ),
    "foreign key violation": (
        TAGS_OK + "blog.Comment:\n  - {id: 1, post_id: 9, author: a, body: b}\n",
        r"(?i)blog\.Comment row 1 \(id=1\): the database refused the row: .*foreign key",
    ),
    "not null violation": (
        TAGS_OK + "blog.Post:\n  - {id: 1, slug: a}\n",
        r"(?i)blog\.Post row 1 \(id=1\): the database refused the row: .*(not null|null value)",
    ),
}


@pytest.mark.parametrize("case", list(ERRORS))
async def test_errors_are_one_line_and_write_nothing(blog: Blog, case: str) -> None:
    content, pattern = ERRORS[case]
    name = "fixtures/bad.json" if "JSON" in case else "fixtures/bad.yaml"

    with pytest.raises(FixtureError) as caught:
        await blog.load(("fixtures/good.yaml", GOOD), (name, content))

    message = str(caught.value)
    assert isinstance(caught.value, CommandError)
    assert "\n" not in message
    assert message.startswith(str(blog.root)), message
    assert caught.match(pattern)
    assert await blog.counts() == dict.fromkeys(TABLES, 0)


async def test_a_failed_load_keeps_the_rows_it_would_have_changed(blog: Blog) -> None:
    await blog.load(("fixtures/demo.yaml", DEMO))
    edited = DEMO.replace("title: Hello", "title: Changed").replace("Nice", "Meh")
    broken = "blog.Tag:\n  - {id: 7, name: dup, slug: aiohttp}\n"

    with pytest.raises(FixtureError, match=r"blog\.Tag row 1 \(id=7\)"):
        await blog.load(("fixtures/edited.yaml", edited), ("fixtures/broken.yaml", broken))

    assert await blog.fetch("SELECT title FROM blog_post") == [("Hello",)]
    assert await blog.fetch("SELECT body FROM blog_comment WHERE id = 1") == [("Nice",)]
    assert await blog.counts() == {
        "blog_post_tags": 2,
        "blog_comment": 2,
        "blog_rating": 0,
        "blog_post": 1,
        "blog_tag": 2,
    }


@pytest.mark.parametrize(
    ("name", "setup", "message"),
    [
        ("missing.yaml", None, "missing.yaml: fixture file not found"),
        ("fixtures", "dir", "fixtures: is a directory, not a fixture file"),
        ("demo.txt", "file", "demo.txt: not a fixture file; name it *.yaml, *.yml or *.json"),
        ("latin1.yaml", "latin-1", "latin1.yaml: not UTF-8 text"),
    ],
)
async def test_files_that_cannot_be_read(
    blog: Blog, name: str, setup: str | None, message: str
) -> None:
    path = blog.root / name
    if setup == "dir":
        path.mkdir()
    elif setup == "file":
        path.write_text(TAGS_OK)
    elif setup == "latin-1":
        path.write_bytes("blog.Tag: [{id: 1, name: café, slug: cafe}]\n".encode("latin-1"))

    with pytest.raises(FixtureError) as caught:
        await load_fixture_files(blog.db, blog.registry, [path])
    assert str(caught.value) == f"{blog.root}/{message}"


async def test_an_empty_file_loads_nothing(blog: Blog) -> None:
    report = await blog.load(("fixtures/empty.yaml", "# nothing yet\n"))
    assert report == FixtureReport()
