"""``aiosite shell``: real processes on a project with a model and its table."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
import sqlalchemy

from tests.cli_runner import AIOSITE, Result, invoke
from tests.cli_runner import aiosite_process as aiosite
from tests.conftest import ProjectFactory, TestDatabase

MODELS = """
    from sqlalchemy import String
    from sqlalchemy.orm import Mapped, mapped_column

    from aiosite import Model


    class Post(Model):
        __tablename__ = "PKG_post"

        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str] = mapped_column(String(200))
"""
SITE_HOOKS = """
    from aiohttp import web


    def setup(app: web.Application, settings: object, registry: object) -> None:
        async def started(app: web.Application) -> None:
            print("startup hook ran", flush=True)

        async def cleaned(app: web.Application) -> None:
            print("cleanup hook ran", flush=True)

        app.on_startup.append(started)
        app.on_cleanup.append(cleaned)
"""
COUNT = "await db.scalar(select(func.count()).select_from(Post))"


@pytest.fixture
def project(
    make_project: ProjectFactory,
    database: TestDatabase,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    files = {
        "PKG/blog/__init__.py": 'from aiosite import App\napp = App("blog")\n',
        "PKG/blog/models.py": MODELS,
        "PKG/site.py": SITE_HOOKS,
    }
    root = make_project(files, apps=["blog"], with_home=False)
    monkeypatch.chdir(root)
    for args in (["db", "init"], ["db", "makemigrations", "-m", "posts"], ["db", "migrate"]):
        result: Result = invoke(capsys, ["--project", str(root), "--env", "test", *args])
        assert result.code == 0, result
    return root


def titles(database: TestDatabase, table: str) -> list[str]:
    async def query() -> list[str]:
        db = database.open()
        try:
            async with db.engine.connect() as connection:
                posts = sqlalchemy.table(table, sqlalchemy.column("id"), sqlalchemy.column("title"))
                rows = await connection.execute(
                    sqlalchemy.select(posts.c.title).order_by(posts.c.id)
                )
                return [row[0] for row in rows]
        finally:
            await db.dispose()

    return asyncio.run(query())


def code_output(stderr: str) -> list[str]:
    """The lines of stderr after the site's startup warnings (the test settings have no
    secret key)."""
    return [line for line in stderr.splitlines() if not line.startswith("security.")]


def test_command_inserts_and_selects_rows(project: Path, database: TestDatabase) -> None:
    insert = (
        "db.add(Post(title='From the shell')); await db.flush(); "
        "[post.title for post in await db.scalars(select(Post))]"
    )
    result = aiosite(project, "shell", "-c", insert)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "startup hook ran",
        "['From the shell']",
        "cleanup hook ran",
    ]
    # db was committed when the shell ended.
    assert titles(database, f"{project.name}_post") == ["From the shell"]
    result = aiosite(project, "shell", "--command", COUNT)
    assert (result.returncode, result.stdout.splitlines()[1]) == (0, "1")


@pytest.mark.db_backends("sqlite")
def test_statements_piped_into_stdin(project: Path, database: TestDatabase) -> None:
    script = (
        "for title in ('one', 'two'):\n"
        "    db.add(Post(title=title))\n"
        "await db.flush()\n"
        f"print('posts:', {COUNT})\n"
        "settings.env, len(app.router.routes()) > 0\n"
    )
    result = aiosite(project, "shell", input=script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1:3] == ["posts: 2", "('test', True)"]
    assert ">>>" not in result.stdout
    assert titles(database, f"{project.name}_post") == ["one", "two"]


@pytest.mark.db_backends("sqlite")
def test_a_failing_command_rolls_back_and_exits_1(project: Path, database: TestDatabase) -> None:
    result = aiosite(project, "shell", "-c", "db.add(Post(title='lost'))\nawait db.flush()\n1 / 0")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    lines = lines[lines.index("Traceback (most recent call last):") :]
    assert lines[1:] == [
        '  File "<command>", line 3, in <module>',
        "    1 / 0",
        *lines[3:-1],  # the carets Python adds under the expression
        "ZeroDivisionError: division by zero",
    ]
    assert "aiosite/cli" not in result.stderr  # the traceback starts in the user's code
    assert "cleanup hook ran" in result.stdout
    assert titles(database, f"{project.name}_post") == []


@pytest.mark.db_backends("sqlite")
def test_a_settings_error_is_one_line(project: Path, database: TestDatabase) -> None:
    (project / "config" / "test.yaml").write_text("databse:\n  url: x\n")
    result = aiosite(project, "shell", "-c", "1")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: config/test.yaml: databse: unknown setting; did you mean 'database'?"
    )


@pytest.mark.db_backends("sqlite")
def test_interactive_console_with_top_level_await(project: Path, database: TestDatabase) -> None:
    # A terminal: the banner, a prompt, top-level await, Ctrl-C cancelling what runs,
    # and Ctrl-D leaving with db committed.
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [str(AIOSITE), "--project", str(project), "--env", "test", "shell"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        cwd=project,
        start_new_session=True,
    )
    os.close(terminal)
    seen = b""

    def read_until(marker: bytes, timeout: float = 30) -> str:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while marker not in seen:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"no {marker!r} in:\n{seen.decode(errors='replace')}")
            ready, _, _ = select.select([controller], [], [], 0.1)
            if ready:
                try:
                    seen += os.read(controller, 65536)
                except OSError:  # the shell has exited
                    break
        found, _, seen = seen.partition(marker)
        return found.decode(errors="replace")

    try:
        banner = read_until(b">>> ")
        assert "aiosite shell: 'Test Site' (test)" in banner
        assert "Ready: app, settings, db" in banner
        assert "Models: Post" in banner
        os.write(controller, b"db.add(Post(title='typed')); await db.flush()\n")
        read_until(b">>> ")
        os.write(controller, f"{COUNT}\n".encode())
        assert read_until(b">>> ").strip().splitlines()[-1] == "1"
        os.write(controller, b"await asyncio.sleep(60)\n")
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)
        assert "KeyboardInterrupt" in read_until(b">>> ")
        os.write(controller, b"\x04")  # Ctrl-D
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(controller)
    assert titles(database, f"{project.name}_post") == ["typed"]


@pytest.mark.db_backends("sqlite")
@pytest.mark.parametrize("how", ["-c", "stdin"])
def test_a_syntax_error_is_shown_alone(project: Path, database: TestDatabase, how: str) -> None:
    source = "db.add(Post(title='never'))\nx = (1,\n"
    if how == "-c":
        result = aiosite(project, "shell", "-c", source)
    else:
        result = aiosite(project, "shell", input=source)
    assert result.returncode == 1
    filename = "<command>" if how == "-c" else "<stdin>"
    # Python's own lines for it (the file, the line, a caret, the error), nothing of aiosite's.
    assert code_output(result.stderr) == [
        f'  File "{filename}", line 2',
        "    x = (1,",
        "        ^",
        "SyntaxError: '(' was never closed",
    ]
    assert "cleanup hook ran" in result.stdout
    assert titles(database, f"{project.name}_post") == []


@pytest.mark.db_backends("sqlite")
def test_sys_exit_gives_the_exit_status(project: Path, database: TestDatabase) -> None:
    add = "db.add(Post(title={!r})); await db.flush(); import sys; "
    result = aiosite(project, "shell", "-c", add.format("three") + "sys.exit(3)")
    assert (result.returncode, code_output(result.stderr)) == (3, [])
    result = aiosite(project, "shell", "-c", add.format("message") + "sys.exit('stopped: why')")
    assert (result.returncode, code_output(result.stderr)) == (1, ["stopped: why"])
    # Only a status of 0 commits.
    assert titles(database, f"{project.name}_post") == []
    result = aiosite(project, "shell", "-c", add.format("zero") + "sys.exit(0)")
    assert (result.returncode, code_output(result.stderr)) == (0, [])
    assert titles(database, f"{project.name}_post") == ["zero"]


FAILING_STARTUP = """
    from collections.abc import AsyncIterator

    from aiohttp import web


    def setup(app: web.Application, settings: object, registry: object) -> None:
        async def resource(app: web.Application) -> AsyncIterator[None]:
            print("resource opened", flush=True)
            yield
            print("resource closed", flush=True)

        async def fails(app: web.Application) -> None:
            raise RuntimeError("the cache is down")

        app.cleanup_ctx.append(resource)
        app.on_startup.append(fails)
"""


@pytest.mark.db_backends("sqlite")
def test_a_failing_start_still_cleans_up(project: Path, database: TestDatabase) -> None:
    (project / project.name / "site.py").write_text(textwrap.dedent(FAILING_STARTUP))
    result = aiosite(project, "shell", "-c", "1")
    assert result.returncode == 2
    [error] = code_output(result.stderr)
    assert error.startswith("error: starting the site failed: RuntimeError: the cache is down")
    assert result.stdout.splitlines() == ["resource opened", "resource closed"]
