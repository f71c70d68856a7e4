"""``aiosite db ...``: run in-process through ``aiosite.cli.main``, and as a subprocess
where a real terminal program (sqlite3, psql) is involved."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from aiosite.scaffold import create_migrations
from tests.cli_runner import Result, invoke, one_line_error
from tests.cli_runner import aiosite_process as aiosite
from tests.conftest import ProjectFactory, TestDatabase

APP_INIT = 'from aiosite import App\n\napp = App("blog")\n'
MODELS = """
    from sqlalchemy import String
    from sqlalchemy.orm import Mapped, mapped_column

    from aiosite import Model


    class Post(Model):
        __tablename__ = "PKG_post"

        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str] = mapped_column(String(200))
"""
FIXTURE = """
    blog.Post:
      - {id: 1, title: First}
      - {id: 2, title: Second}
"""
FILES = {
    "PKG/blog/__init__.py": APP_INIT,
    "PKG/blog/models.py": MODELS,
    "PKG/blog/fixtures/posts.yaml": FIXTURE,
}


Run = Callable[..., Result]


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    """``run(root, "db", ...)``: the CLI in-process on the project, test settings."""
    monkeypatch.delenv("AIOSITE_PROJECT", raising=False)

    def run(root: Path, *args: str, cwd: Path | None = None) -> Result:
        monkeypatch.chdir(cwd or root)
        return invoke(capsys, ["--project", str(root), "--env", "test", *args])

    return run


@pytest.fixture
def project(make_project: ProjectFactory, database: TestDatabase) -> Path:
    root = make_project(FILES, apps=["blog"], with_home=False)
    create_migrations(root)
    return root


def revision_in(out: str) -> str:
    found = re.search(r"-([0-9a-f]+)_\w+\.py", out)
    assert found, out
    return found.group(1)


def test_init_writes_the_migrations_folder(
    make_project: ProjectFactory, database: TestDatabase, run: Run
) -> None:
    root = make_project(FILES, apps=["blog"], with_home=False)
    one_line_error(run(root, "db", "migrate"), "has no env.py", "`aiosite db init`")

    result = run(root, "db", "init")
    assert result.code == 0, result.err
    assert "Created migrations/" in result.out
    written = sorted(str(p.relative_to(root)) for p in (root / "migrations").rglob("*"))
    assert written == [
        "migrations/env.py",
        "migrations/script.py.mako",
        "migrations/versions",
        "migrations/versions/.gitkeep",
    ]
    assert "run_migrations()" in (root / "migrations" / "env.py").read_text()
    assert "import sqlalchemy as sa" in (root / "migrations" / "script.py.mako").read_text()
    one_line_error(run(root, "db", "init"), "already has an env.py")

    assert run(root, "db", "migrate").code == 0


def test_makemigrations_migrate_current_history(project: Path, run: Run) -> None:
    assert run(project, "db", "history").out == "No migrations yet.\n"
    assert run(project, "db", "current").out == "No migration applied.\n"

    made = run(project, "db", "makemigrations", "-m", "posts")
    assert made.code == 0, made.err
    assert made.out.startswith("Created migrations/versions/")
    assert "Review it, then apply it with `aiosite db migrate`." in made.out
    rev = revision_in(made.out)

    migrated = run(project, "db", "migrate")
    assert migrated.out == f"Applied {rev}  posts\n"
    assert run(project, "db", "migrate").out == (
        "No migrations to apply; the database is up to date.\n"
    )
    assert run(project, "db", "makemigrations", "-m", "again").out == "No changes detected.\n"
    assert run(project, "db", "current").out == f"{rev} (head)\n"
    assert run(project, "db", "history").out == f"<base> -> {rev} (head) (current), posts\n"


def test_downgrade_takes_minus_one(project: Path, run: Run) -> None:
    rev = revision_in(run(project, "db", "makemigrations", "-m", "posts").out)
    assert run(project, "db", "migrate").code == 0

    result = run(project, "db", "downgrade", "-1")
    assert result.code == 0, result.err
    assert result.out == f"Reverted {rev}  posts\n"
    assert run(project, "db", "current").out == "No migration applied.\n"
    one_line_error(run(project, "db", "downgrade", "-1"), "nothing to downgrade (-1)")
    assert run(project, "db", "downgrade", "base").out == (
        "Nothing to revert; the database is already at base.\n"
    )
    usage = run(project, "db", "downgrade")
    assert usage.code == 2
    assert "Missing argument 'revision'" in usage.err


def test_check_exit_codes(project: Path, run: Run) -> None:
    pending = run(project, "db", "check")
    assert pending.code == 1
    assert pending.out.splitlines() == [
        "The models have changes without a migration:",
        f"  add table {project.name}_post",
        'Write one with `aiosite db makemigrations -m "what changed"`.',
    ]
    run(project, "db", "makemigrations", "-m", "posts")
    one_line_error(run(project, "db", "check"), "not up to date", "aiosite db migrate")
    run(project, "db", "migrate")
    up_to_date = run(project, "db", "check")
    assert up_to_date.code == 0
    assert up_to_date.out == "No changes detected; the migrations cover the models.\n"


def test_unknown_revision(project: Path, run: Run) -> None:
    for command in ("migrate", "downgrade"):
        one_line_error(
            run(project, "db", command, "f00ba4"),
            "Can't locate revision identified by 'f00ba4'",
            "`aiosite db history`",
        )


def test_makemigrations_empty_writes_a_migration_without_comparing(project: Path, run: Run) -> None:
    made = run(project, "db", "makemigrations", "--empty", "-m", "data fix")
    assert made.code == 0, made.err
    written = project / made.out.split()[1]
    assert "def upgrade() -> None:\n    pass" in written.read_text()
    migrated = run(project, "db", "migrate")
    assert migrated.out == f"Applied {revision_in(made.out)}  data fix\n"
    assert run(project, "db", "check").code == 1  # the models still need a migration


def test_migrate_sql_prints_and_runs_nothing(project: Path, run: Run) -> None:
    run(project, "db", "makemigrations", "-m", "posts")
    result = run(project, "db", "migrate", "--sql")
    assert result.code == 0, result.err
    assert f"CREATE TABLE {project.name}_post" in result.out
    assert run(project, "db", "current").out == "No migration applied.\n"


# --- shell -----------------------------------------------------------------------------


def test_shell_runs_the_database_client(project: Path, database: TestDatabase, run: Run) -> None:
    run(project, "db", "makemigrations", "-m", "posts")
    run(project, "db", "migrate")
    result = aiosite(project, "db", "shell", input="SELECT count(*) FROM alembic_version;\n")
    assert result.returncode == 0, result.stderr
    # sqlite3 prints "1"; psql a table with "     1" in it.
    assert re.search(r"^\s*1\s*$", result.stdout, re.MULTILINE), result.stdout
    count = f"SELECT count(*) FROM {project.name}_post;"  # noqa: S608 - our table
    tables = aiosite(project, "db", "shell", input=count)
    assert re.search(r"^\s*0\s*$", tables.stdout, re.MULTILINE), tables.stdout + tables.stderr


def test_shell_passes_arguments_and_the_exit_status(project: Path, database: TestDatabase) -> None:
    if database.backend == "sqlite":
        failing = aiosite(project, "db", "shell", input=".exit 3\n")
    else:
        failing = aiosite(
            project, "db", "shell", "--", "-v", "ON_ERROR_STOP=1", input="SELECT 1/0;\n"
        )
    assert failing.returncode == 3, failing.stdout + failing.stderr


FAKE_PSQL = """\
#!{python}
import json, os, sys
print(json.dumps({{"argv": sys.argv[1:], "password": os.environ.get("PGPASSWORD"),
                  "options": os.environ.get("PGOPTIONS")}}))
sys.exit(7)
"""


def test_psql_gets_the_password_in_its_environment_only(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    # A stand-in psql that reports what it was given; no server is needed.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "psql"
    fake.write_text(FAKE_PSQL.format(python=sys.executable))
    fake.chmod(0o755)
    root = make_project(
        env_yaml={
            "test": "database:\n"
            "  url: postgresql://alice:s3cret@db.example:6543/shop\n"
            "  schema_name: tenant\n"
        },
    )
    env = {
        key: value for key, value in os.environ.items() if not key.startswith("AIOSITE_DATABASE")
    }
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    result = aiosite(root, "db", "shell", "--", "-c", "SELECT 1", env=env)
    assert result.returncode == 7, result.stderr
    seen = json.loads(result.stdout)
    assert seen["argv"] == [
        "--host",
        "db.example",
        "--port",
        "6543",
        "--username",
        "alice",
        "--dbname",
        "shop",
        "-c",
        "SELECT 1",
    ]
    assert seen["password"] == "s3cret"  # noqa: S105 - the URL's, in the test
    assert seen["options"] == "-c search_path=tenant"


def test_shell_names_the_package_of_a_missing_client(
    project: Path, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    line = one_line_error(run(project, "db", "shell"), "is not installed")
    assert re.search(r"the (sqlite3|psql) command is not installed; install ", line)
    assert "apt install" in line


# --- seed ------------------------------------------------------------------------------


def test_seed_loads_fixtures_relative_to_the_project(
    project: Path, database: TestDatabase, run: Run, tmp_path: Path
) -> None:
    run(project, "db", "makemigrations", "-m", "posts")
    run(project, "db", "migrate")
    fixture = f"{project.name}/blog/fixtures/posts.yaml"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    first = run(project, "db", "seed", fixture, cwd=elsewhere)
    assert first.code == 0, first.err
    assert first.out == "blog.Post: 2 created, 0 updated, 0 unchanged\n"
    # From the project directory, and again: nothing new.
    again = run(project, "db", "seed", fixture)
    assert again.out == "blog.Post: 0 created, 0 updated, 2 unchanged\n"

    changed = elsewhere / "changed.json"
    changed.write_text(json.dumps({"blog.Post": [{"id": 2, "title": "Second, edited"}]}))
    result = run(project, "db", "seed", "changed.json", cwd=elsewhere)
    assert result.out == "blog.Post: 0 created, 1 updated, 0 unchanged\n"

    one_line_error(run(project, "db", "seed", "missing.yaml"), "missing.yaml")


def test_db_help_lists_the_commands(run: Run, make_project: ProjectFactory) -> None:
    root = make_project()
    result = run(root, "db", "--help")
    assert result.code == 0
    commands = "init makemigrations migrate downgrade history current check shell seed"
    for name in commands.split():
        assert re.search(rf"^\s*{name}\s", result.out, re.MULTILINE), name
