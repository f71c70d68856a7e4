"""The plugin's test database and ``db`` fixture, run on a tiny blog in a pytest subprocess."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import asyncpg  # noqa: F401 - see below
import pytest
from sqlalchemy import text

from tests.conftest import POSTGRESQL_URL, TestDatabase, require_service

pytest_plugins = ["pytester"]
# pytester restores sys.modules after each test; asyncpg (and the ssl module under it),
# first imported inside a test, would be imported twice, and the second one crashes the
# process. Imported here, before any test, it stays.

INI = """\
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
addopts = --strict-markers -p no:cacheprovider
filterwarnings = error
pythonpath = .
"""

MODELS = """\
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from aiosite import Model


class Post(Model):
    __tablename__ = "blog_post"
    # AUTOINCREMENT keeps its counter in sqlite_sequence, which db must reset.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(100))


class Comment(Model):
    __tablename__ = "blog_comment"

    id: Mapped[int] = mapped_column(primary_key=True)
    # No ON DELETE: emptying the posts first would break this key.
    post_id: Mapped[int] = mapped_column(ForeignKey("blog_post.id"))
    body: Mapped[str] = mapped_column(String(100))
"""

ROUTES = """\
from aiohttp import web
from sqlalchemy import select

from aiosite import Routes, db_session, json_response

from .models import Post

routes = Routes()


@routes.get("/posts", name="list")
async def posts(request: web.Request) -> web.Response:
    titles = await db_session(request).scalars(select(Post.title).order_by(Post.id))
    return json_response({"titles": list(titles)})


@routes.post("/posts", name="create")
async def create(request: web.Request) -> web.Response:
    form = await request.post()
    post = Post(title=str(form["title"]))
    db_session(request).add(post)
    await db_session(request).flush()
    return json_response({"id": post.id}, status=201)
"""

# Run in file order: the second test sees what the first left behind, if anything.
TESTS = """\
from pathlib import Path

from sqlalchemy import func, select, text

from aiosite.testing import csrf_token

from mysite.blog.models import Comment, Post


async def count(db, model):
    return await db.scalar(select(func.count()).select_from(model))


async def test_1_writes(db):
    post = Post(title="first")
    db.add(post)
    await db.flush()
    db.add(Comment(post_id=post.id, body="hello"))
    await db.commit()
    assert post.id == 1
    assert await count(db, Comment) == 1


async def test_2_starts_clean(db):
    assert await count(db, Post) == 0
    assert await count(db, Comment) == 0
    post = Post(title="again")
    db.add(post)
    await db.commit()
    assert post.id == 1, "ids restart"


async def test_view_serves_a_row_committed_through_db(client, db):
    db.add(Post(title="from the test"))
    await db.commit()
    resp = await client.get("/posts")
    assert await resp.json() == {"titles": ["from the test"]}


async def test_row_written_by_a_view_is_seen_through_db(db, client):
    token = await csrf_token(client)
    resp = await client.post("/posts", data={"title": "from the view", "csrf_token": token})
    assert resp.status == 201
    assert list(await db.scalars(select(Post.title))) == ["from the view"]


async def test_where(db, site_settings):
    url, schema = site_settings.database.url, site_settings.database.schema_name
    names = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    if schema:
        assert await db.scalar(text("SELECT current_schema()")) == schema
        names = f"SELECT tablename FROM pg_tables WHERE schemaname = '{schema}'"
    tables = sorted(await db.scalars(text(names)))
    version = None
    if "alembic_version" in tables:
        version = await db.scalar(text("SELECT version_num FROM alembic_version"))
    Path("where.txt").write_text(f"{url}\\n{schema}\\n{','.join(tables)}\\n{version}\\n")
"""

BROKEN_MIGRATION = """\
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("blog_none")


def downgrade() -> None:
    pass
"""


def write_project(root: Path, *, test_yaml: str = "{}\n", tests: str = TESTS) -> None:
    files = {
        "pytest.ini": INI,
        "config/default.yaml": "site:\n  name: Blog\n  package: mysite\napps:\n  - mysite.blog\n",
        "config/test.yaml": test_yaml,
        "mysite/__init__.py": "",
        "mysite/blog/__init__.py": 'from aiosite import App\n\napp = App("blog", prefix="")\n',
        "mysite/blog/models.py": MODELS,
        "mysite/blog/routes.py": ROUTES,
        "tests/test_blog.py": tests,
    }
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def aiosite(root: Path, *args: str, **env: str) -> str:
    """Run the aiosite CLI in the project; its output."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "aiosite"), *args],
        cwd=root,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def make_migrations(root: Path, scratch: Path) -> str:
    """``aiosite db init`` and ``makemigrations`` in the project; the revision's id."""
    aiosite(root, "db", "init")
    # makemigrations compares the models with a database: an empty one of its own.
    out = aiosite(
        root,
        "db",
        "makemigrations",
        "-m",
        "initial",
        AIOSITE_ENV="test",
        AIOSITE_DATABASE__URL=f"sqlite+aiosqlite:///{scratch / 'scratch.sqlite3'}",
    )
    (made,) = (root / "migrations" / "versions").glob("*.py")
    assert made.name in out
    return made.stem.split("-")[1].removesuffix("_initial")


def where(root: Path) -> tuple[str, str, list[str], str]:
    """The test database's URL, schema, tables and migration, as the inner run saw them."""
    url, schema, tables, version = (root / "where.txt").read_text().splitlines()
    return url, schema, tables.split(","), version


def backend_yaml(db_backend: str) -> str:
    if db_backend == "sqlite":
        return "{}\n"
    require_service("PostgreSQL", "127.0.0.1", 5432)
    return f"database:\n  url: {POSTGRESQL_URL}\n  schema_name: public\n"


async def schema_exists(name: str) -> bool:
    database = TestDatabase("postgresql", POSTGRESQL_URL, None).open()
    try:
        async with database.engine.connect() as connection:
            found = await connection.scalar(
                text("SELECT 1 FROM pg_namespace WHERE nspname = :name"), {"name": name}
            )
    finally:
        await database.dispose()
    return found is not None


@pytest.mark.parametrize("migrations", [False, True], ids=["create_all", "migrations"])
def test_db_gives_each_test_a_clean_database_shared_with_client(
    pytester: pytest.Pytester,
    tmp_path_factory: pytest.TempPathFactory,
    db_backend: str,
    migrations: bool,
) -> None:
    write_project(pytester.path)
    revision = (
        make_migrations(pytester.path, tmp_path_factory.mktemp("gen")) if migrations else None
    )
    (pytester.path / "config" / "test.yaml").write_text(backend_yaml(db_backend))
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=5)
    url, schema, tables, version = where(pytester.path)
    if migrations:
        # Migrated, and alembic_version kept through the emptying of the tables.
        assert tables == ["alembic_version", "blog_comment", "blog_post"]
        assert version == revision
    else:
        assert tables == ["blog_comment", "blog_post"]
    if db_backend == "sqlite":
        assert schema == "None"
        assert url.startswith("sqlite+aiosqlite:///")
        assert Path(url.removeprefix("sqlite+aiosqlite:///")).name == "test.sqlite3"
        assert "aiosite-db" in url
    else:
        # The configured server and database, in a schema of the run's own, gone after.
        assert url == POSTGRESQL_URL
        assert schema.startswith("test_")
        assert not asyncio.run(schema_exists(schema))
    # The development database (var/db.sqlite3 by default) is never created.
    assert not (pytester.path / "var").exists()


def test_the_development_database_is_left_alone(pytester: pytest.Pytester) -> None:
    write_project(pytester.path)
    dev = pytester.path / "var" / "db.sqlite3"
    dev.parent.mkdir()
    with sqlite3.connect(dev) as connection:
        connection.execute("CREATE TABLE blog_post (id INTEGER PRIMARY KEY, title TEXT)")
        connection.execute("INSERT INTO blog_post (title) VALUES ('a development post')")
    connection.close()
    before = hashlib.sha256(dev.read_bytes()).hexdigest()
    tests = textwrap.dedent("""\
        async def test_sees_only_the_test_database(client):
            resp = await client.get("/posts")
            assert await resp.json() == {"titles": []}
    """)
    (pytester.path / "tests" / "test_blog.py").write_text(tests)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    assert hashlib.sha256(dev.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in dev.parent.iterdir()) == ["db.sqlite3"]


def test_an_unreachable_test_database_is_one_clear_line(pytester: pytest.Pytester) -> None:
    # Port 1 refuses connections; the password must not show.
    url = "postgresql+asyncpg://root:s3cret@127.0.0.1:1/test"
    tests = textwrap.dedent("""\
        def test_plain():
            assert True


        async def test_with_db(db):
            pass


        async def test_with_client(client):
            pass
    """)
    write_project(pytester.path, test_yaml=f"database:\n  url: {url}\n", tests=tests)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1, errors=2)
    # The message alone, on one line: no traceback, no chained error.
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_with_db*",
            "aiosite: test database: database.url: cannot connect to "
            "postgresql+asyncpg://root:***@127.0.0.1:1/test: ConnectionRefusedError: *",
            "*ERROR at setup of test_with_client*",
        ],
        consecutive=True,
    )
    out = result.stdout.str()
    assert "s3cret" not in out
    assert "Traceback" not in out
    assert "test_database.py" not in out, "no traceback into the plugin"


def test_a_failing_migration_is_one_clear_line(pytester: pytest.Pytester, db_backend: str) -> None:
    write_project(pytester.path, test_yaml=backend_yaml(db_backend))
    aiosite(pytester.path, "db", "init")
    (pytester.path / "migrations" / "versions" / "0001_broken.py").write_text(BROKEN_MIGRATION)
    tests = "async def test_with_db(db):\n    pass\n"
    (pytester.path / "tests" / "test_blog.py").write_text(tests)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_with_db*",
            "aiosite: test database: the database refused a migration: *blog_none*",
        ],
        consecutive=True,
    )
