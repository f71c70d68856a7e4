"""Alembic migrations driven by the settings, on real SQLite and PostgreSQL databases.

Models change between steps and Python keeps imported modules, so the steps that follow
a model change run ``aiosite db ...`` in subprocesses (they inherit the test database's
environment variables); the rest calls ``aiosite.db.migrations`` in-process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Inspector

from aiosite import Settings, load_settings
from aiosite.apps import ensure_importable
from aiosite.db.migrations import (
    Step,
    check,
    current,
    current_revisions,
    downgrade,
    history,
    makemigrations,
    migrate,
)
from aiosite.exceptions import CommandError
from aiosite.scaffold import create_migrations
from tests.cli_runner import TIMEOUT
from tests.cli_runner import aiosite_process as aiosite
from tests.conftest import POSTGRESQL_URL, ProjectFactory, TestDatabase, require_service

ALEMBIC = Path(sys.executable).with_name("alembic")

APP_INIT = 'from aiosite import App\n\napp = App("blog")\n'

POSTS = """
    from sqlalchemy import String
    from sqlalchemy.orm import Mapped, mapped_column

    from aiosite import Model, Timestamped


    class Post(Timestamped, Model):
        __tablename__ = "PKG_post"

        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str] = mapped_column(String(200))
"""

POSTS_AND_TAGS = """
    from sqlalchemy import String
    from sqlalchemy.orm import Mapped, mapped_column

    from aiosite import Model, Timestamped


    class Post(Timestamped, Model):
        __tablename__ = "PKG_post"

        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str] = mapped_column(String(200))
        summary: Mapped[str | None] = mapped_column(String(500))


    class Tag(Model):
        __tablename__ = "PKG_tag"

        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(50), unique=True)
"""

# Tag is gone: its table must be dropped, as Django would.
POSTS_WITH_SUMMARY = POSTS_AND_TAGS.split("\n\n    class Tag")[0] + "\n"


@pytest.fixture
def project(make_project: ProjectFactory, database: TestDatabase) -> Path:
    """A project with a blog app and a migrations/ folder, on the test database."""
    root = make_project(
        {"PKG/blog/__init__.py": APP_INIT, "PKG/blog/models.py": POSTS},
        apps=["blog"],
        with_home=False,
    )
    create_migrations(root)
    return root


def settings_of(root: Path) -> Settings:
    ensure_importable(root)
    return load_settings(root, "test")


def write_models(root: Path, source: str) -> None:
    path = root / root.name / "blog" / "models.py"
    path.write_text(textwrap.dedent(source).replace("PKG", root.name))


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def versions(root: Path) -> list[Path]:
    return sorted((root / "migrations" / "versions").glob("*.py"))


def revision_of(path: Path) -> str:
    found = re.search(r"^revision: str = '(\w+)'", path.read_text(), re.MULTILINE)
    assert found, path.read_text()
    return found.group(1)


def new_migration(root: Path, message: str) -> Path:
    before = set(versions(root))
    out = ok(aiosite(root, "db", "makemigrations", "-m", message))
    (created,) = set(versions(root)) - before
    assert f"Created migrations/versions/{created.name}" in out
    return created


def look(database: TestDatabase, fn: Callable[[Inspector, Connection], Any]) -> Any:
    """``fn(inspector, connection)`` on a new connection to the test database."""

    async def run() -> Any:
        db = database.open()
        try:
            async with db.engine.connect() as connection:
                return await connection.run_sync(lambda sync: fn(inspect(sync), sync))
        finally:
            await db.dispose()

    return asyncio.run(run())


def tables(database: TestDatabase) -> set[str]:
    return set(look(database, lambda inspector, _: inspector.get_table_names()))


def columns(database: TestDatabase, table: str) -> dict[str, dict[str, Any]]:
    found = look(database, lambda inspector, _: inspector.get_columns(table))
    return {column["name"]: column for column in found}


def applied(database: TestDatabase) -> list[str]:
    def read(_: Inspector, connection: Connection) -> list[str]:
        return list(connection.scalars(text("SELECT version_num FROM alembic_version")))

    return look(database, read)  # type: ignore[no-any-return]


# --- the round trip, in subprocesses ---------------------------------------------------


def test_round_trip(project: Path, database: TestDatabase) -> None:
    post, tag = f"{project.name}_post", f"{project.name}_tag"

    first = new_migration(project, "posts")
    source = first.read_text()
    assert f"op.create_table('{post}'" in source
    # aiosite's UtcDateTime is written as plain SQLAlchemy: no aiosite import.
    assert "sa.DateTime(timezone=True)" in source
    assert "aiosite" not in source
    # makemigrations writes a file; in the database at most Alembic's version table.
    assert tables(database) <= {"alembic_version"}

    out = ok(aiosite(project, "db", "migrate"))
    rev1 = revision_of(first)
    assert f"Applied {rev1}  posts" in out
    assert set(columns(database, post)) == {"id", "title", "created", "updated"}
    assert applied(database) == [rev1]

    write_models(project, POSTS_AND_TAGS)
    second = new_migration(project, "summary and tags")
    rev2 = revision_of(second)
    assert f"down_revision: str | Sequence[str] | None = '{rev1}'" in second.read_text()
    ok(aiosite(project, "db", "migrate"))
    assert "summary" in columns(database, post)
    assert tag in tables(database)
    assert applied(database) == [rev2]

    out = ok(aiosite(project, "db", "downgrade", "-1"))
    assert f"Reverted {rev2}  summary and tags" in out
    assert "summary" not in columns(database, post)
    assert tag not in tables(database)
    assert applied(database) == [rev1]

    ok(aiosite(project, "db", "migrate"))
    assert "summary" in columns(database, post)
    assert applied(database) == [rev2]

    write_models(project, POSTS_WITH_SUMMARY)
    third = new_migration(project, "drop tags")
    assert f"op.drop_table('{tag}')" in third.read_text()
    ok(aiosite(project, "db", "migrate"))
    assert tables(database) == {"alembic_version", post}

    out = ok(aiosite(project, "db", "downgrade", "base"))
    assert out.count("Reverted ") == 3
    assert tables(database) == {"alembic_version"}
    assert applied(database) == []


def test_no_changes_writes_no_migration(project: Path, database: TestDatabase) -> None:
    new_migration(project, "posts")
    ok(aiosite(project, "db", "migrate"))
    # Timestamps (UtcDateTime, server defaults) compare equal to what was created.
    out = ok(aiosite(project, "db", "makemigrations", "-m", "nothing"))
    assert out.strip() == "No changes detected."
    assert len(versions(project)) == 1
    out = ok(aiosite(project, "db", "check"))
    assert "No changes detected" in out


def test_check_exit_codes(project: Path, database: TestDatabase) -> None:
    pending = aiosite(project, "db", "check")
    assert pending.returncode == 1, pending.stderr
    assert f"add table {project.name}_post" in pending.stdout
    assert "aiosite db makemigrations" in pending.stdout

    new_migration(project, "posts")
    behind = aiosite(project, "db", "check")
    assert behind.returncode == 2
    assert behind.stderr.strip().splitlines() == [
        "error: the database is not up to date with the migrations; run `aiosite db migrate` first"
    ]

    ok(aiosite(project, "db", "migrate"))
    assert aiosite(project, "db", "check").returncode == 0
    write_models(project, POSTS_WITH_SUMMARY)
    changed = aiosite(project, "db", "check")
    assert changed.returncode == 1
    assert f"add column {project.name}_post.summary" in changed.stdout


# --- SQLite batch mode -----------------------------------------------------------------

AUTHORS = """
    from sqlalchemy import ForeignKey, String
    from sqlalchemy.orm import Mapped, mapped_column

    from aiosite import Model


    class Author(Model):
        __tablename__ = "PKG_author"

        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(50))
        nickname: Mapped[str | None] = mapped_column(String(50))


    class Book(Model):
        __tablename__ = "PKG_book"

        id: Mapped[int] = mapped_column(primary_key=True)
        author_id: Mapped[int] = mapped_column(ForeignKey("PKG_author.id", ondelete="CASCADE"))
"""

# name: nullable and unique; nickname dropped. SQLite alters none of these in place.
AUTHORS_ALTERED = AUTHORS.replace(
    "name: Mapped[str] = mapped_column(String(50))",
    "name: Mapped[str | None] = mapped_column(String(50), unique=True)",
).replace("        nickname: Mapped[str | None] = mapped_column(String(50))\n", "")


def test_sqlite_batch_mode_alters_and_reverts(
    make_project: ProjectFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqlite = TestDatabase("sqlite", f"sqlite+aiosqlite:///{tmp_path}/batch.sqlite3", None)
    monkeypatch.setenv("AIOSITE_DATABASE__URL", sqlite.url)
    monkeypatch.delenv("AIOSITE_DATABASE__SCHEMA_NAME", raising=False)
    root = make_project(
        {"PKG/blog/__init__.py": APP_INIT, "PKG/blog/models.py": AUTHORS},
        apps=["blog"],
        with_home=False,
    )
    create_migrations(root)
    author, book = f"{root.name}_author", f"{root.name}_book"
    new_migration(root, "authors")
    ok(aiosite(root, "db", "migrate"))
    ok(
        aiosite(
            root,
            "db",
            "shell",
            input=f"INSERT INTO {author} VALUES (1, 'Ann', 'A');\n"  # noqa: S608 - our tables
            f"INSERT INTO {book} VALUES (1, 1);\n",
        )
    )

    write_models(root, AUTHORS_ALTERED)
    altered = new_migration(root, "alter authors")
    assert f"with op.batch_alter_table('{author}', schema=None)" in altered.read_text()
    ok(aiosite(root, "db", "migrate"))

    found = columns(sqlite, author)
    assert set(found) == {"id", "name"}
    assert found["name"]["nullable"] is True
    uniques = look(sqlite, lambda inspector, _: inspector.get_unique_constraints(author))
    assert [u["column_names"] for u in uniques] == [["name"]]
    # The table was copied and the old one dropped: rows kept, and the book that refers
    # to the author was not deleted by ON DELETE CASCADE.
    joined = f"SELECT a.name, b.id FROM {author} a JOIN {book} b"  # noqa: S608 - our tables
    rows = look(sqlite, lambda _, c: c.execute(text(joined)).all())
    assert [tuple(row) for row in rows] == [("Ann", 1)]

    ok(aiosite(root, "db", "downgrade", "-1"))
    found = columns(sqlite, author)
    assert set(found) == {"id", "name", "nickname"}
    assert found["name"]["nullable"] is False
    assert look(sqlite, lambda inspector, _: inspector.get_unique_constraints(author)) == []
    count = f"SELECT count(*) FROM {book}"  # noqa: S608 - our table
    rows = look(sqlite, lambda _, c: c.execute(text(count)).scalar())
    assert rows == 1


# --- creating the database on first run ------------------------------------------------


def test_migrate_creates_the_sqlite_file(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIOSITE_DATABASE__URL", raising=False)
    monkeypatch.delenv("AIOSITE_DATABASE__SCHEMA_NAME", raising=False)
    root = make_project(
        {"PKG/blog/__init__.py": APP_INIT, "PKG/blog/models.py": POSTS},
        apps=["blog"],
        with_home=False,
        env_yaml={"test": "database:\n  url: sqlite:///var/data/site.sqlite3\n"},
    )
    create_migrations(root)
    assert not (root / "var").exists()
    assert "No migrations to apply" in ok(aiosite(root, "db", "migrate"))
    assert (root / "var" / "data" / "site.sqlite3").is_file()
    new_migration(root, "posts")
    ok(aiosite(root, "db", "migrate"))
    sqlite = TestDatabase("sqlite", f"sqlite+aiosqlite:///{root}/var/data/site.sqlite3", None)
    assert tables(sqlite) == {"alembic_version", f"{root.name}_post"}


def test_migrate_creates_the_postgresql_schema(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    schema = f"aiosite_test_{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("AIOSITE_DATABASE__URL", POSTGRESQL_URL)
    monkeypatch.setenv("AIOSITE_DATABASE__SCHEMA_NAME", schema)
    root = make_project(
        {"PKG/blog/__init__.py": APP_INIT, "PKG/blog/models.py": POSTS},
        apps=["blog"],
        with_home=False,
    )
    create_migrations(root)
    target = TestDatabase("postgresql", POSTGRESQL_URL, schema)
    try:
        new_migration(root, "posts")  # creates the (empty) schema to compare with
        ok(aiosite(root, "db", "migrate"))
        public = TestDatabase("postgresql", POSTGRESQL_URL, None)
        found = look(
            public,
            lambda _, c: set(
                c.scalars(
                    text(
                        "SELECT table_name FROM information_schema.tables WHERE table_schema = :s"
                    ),
                    {"s": schema},
                )
            ),
        )
        # The version table lives in the schema too, so several sites share one database.
        assert found == {"alembic_version", f"{root.name}_post"}
    finally:
        asyncio.run(_drop_schema(target))


async def _drop_schema(target: TestDatabase) -> None:
    database = target.open()
    try:
        await database.drop_schema()
    finally:
        await database.dispose()


# --- the Python API, in-process --------------------------------------------------------


def test_api_round_trip(project: Path, database: TestDatabase) -> None:
    settings = settings_of(project)
    assert history(settings) == ""
    assert current(settings) == ""
    path = makemigrations(settings, "posts")
    assert path is not None
    assert path.parent == project / "migrations" / "versions"
    assert re.fullmatch(r"\d{4}_\d\d_\d\d_\d{4}-\w+_posts\.py", path.name), path.name
    rev = revision_of(path)

    assert migrate(settings) == [Step(rev, "posts", upgrade=True)]
    assert migrate(settings) == []
    assert current_revisions(settings) == (rev,)
    assert current(settings).strip() == f"{rev} (head)"
    assert history(settings).strip() == f"<base> -> {rev} (head) (current), posts"
    assert makemigrations(settings, "again") is None
    assert check(settings) == []

    assert downgrade(settings, "base") == [Step(rev, "posts", upgrade=False)]
    assert tables(database) == {"alembic_version"}
    with pytest.raises(CommandError, match=r"^nothing to downgrade \(-1\)"):
        downgrade(settings, "-1")


def test_empty_migration_for_changes_by_hand(project: Path, database: TestDatabase) -> None:
    settings = settings_of(project)
    path = makemigrations(settings, "data fix", empty=True)
    assert path is not None
    source = path.read_text()
    assert "def upgrade() -> None:\n    pass" in source
    # An empty migration still moves the database forward, and compared nothing: the
    # Post model still has no table.
    assert [step.message for step in migrate(settings)] == ["data fix"]
    assert check(settings) == [f"add table {project.name}_post"]


def test_a_failing_migration_is_one_line(project: Path, database: TestDatabase) -> None:
    settings = settings_of(project)
    path = makemigrations(settings, "broken", empty=True)
    assert path is not None
    path.write_text(
        path.read_text().replace(
            "def upgrade() -> None:\n    pass",
            "def upgrade() -> None:\n    op.execute('SELECT * FROM no_such_table')",
        )
    )
    with pytest.raises(CommandError, match=r"^the database refused a migration: .*no_such_table"):
        migrate(settings)
    assert current_revisions(settings) == ()


async def test_migrate_from_async_code(project: Path, database: TestDatabase) -> None:
    # A running event loop: migrate runs Alembic's own loop in a worker thread.
    settings = settings_of(project)
    assert makemigrations(settings, "posts") is not None
    assert [step.message for step in migrate(settings)] == ["posts"]
    assert f"{project.name}_post" in tables_async_safe(database)


def tables_async_safe(database: TestDatabase) -> set[str]:
    # asyncio.run cannot nest; look from a thread of its own.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(tables, database).result()


async def test_migrate_on_a_shared_connection(project: Path, database: TestDatabase) -> None:
    settings = settings_of(project)
    assert makemigrations(settings, "posts") is not None
    db = database.open()
    try:
        async with db.engine.connect() as connection:
            steps = await connection.run_sync(lambda sync: migrate(settings, connection=sync))
            await connection.commit()
        assert [step.message for step in steps] == ["posts"]
        async with db.engine.connect() as connection:
            names = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
        assert f"{project.name}_post" in names
    finally:
        await db.dispose()


def test_sql_mode_prints_the_sql(project: Path, database: TestDatabase) -> None:
    settings = settings_of(project)
    assert makemigrations(settings, "posts") is not None
    out = StringIO()
    migrate(settings, sql=True, stdout=out)
    sql = out.getvalue()
    assert f"CREATE TABLE {project.name}_post" in sql
    assert "INSERT INTO alembic_version" in sql
    if database.schema_name:
        assert f'SET search_path TO "{database.schema_name}"' in sql
    assert f"{project.name}_post" not in tables(database)  # nothing ran


def test_user_errors(make_project: ProjectFactory, database: TestDatabase) -> None:
    root = make_project(
        {"PKG/blog/__init__.py": APP_INIT, "PKG/blog/models.py": POSTS},
        apps=["blog"],
        with_home=False,
    )
    settings = settings_of(root)
    with pytest.raises(CommandError, match=r"has no env\.py; create the migrations folder with"):
        migrate(settings)
    create_migrations(root)
    with pytest.raises(CommandError, match=r"already has an env\.py"):
        create_migrations(root)
    with pytest.raises(CommandError, match=r"Can't locate revision identified by 'nope'"):
        migrate(settings, "nope")
    assert makemigrations(settings, "posts") is not None
    with pytest.raises(CommandError, match=r"not up to date.*run `aiosite db migrate` first"):
        makemigrations(settings, "more")
    migrate(settings)
    with pytest.raises(CommandError, match=r"^cannot move that far: Relative revision -2"):
        downgrade(settings, "-2")


# --- plain alembic ---------------------------------------------------------------------

ALEMBIC_INI = """\
[alembic]
script_location = %(here)s/migrations
"""


def test_plain_alembic_finds_the_settings(project: Path, database: TestDatabase) -> None:
    (project / "alembic.ini").write_text(ALEMBIC_INI)
    env = {**os.environ, "AIOSITE_ENV": "test"}

    def alembic(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ALEMBIC), *args],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )

    made = alembic("revision", "--autogenerate", "-m", "posts")
    assert made.returncode == 0, made.stderr
    assert len(versions(project)) == 1
    upgraded = alembic("upgrade", "head")
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"{project.name}_post" in tables(database)
    again = alembic("revision", "--autogenerate", "-m", "nothing")
    assert again.returncode == 0, again.stderr
    assert "No changes detected" in again.stderr
    assert len(versions(project)) == 1
