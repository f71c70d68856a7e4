"""A project made by ``aiosite new`` passes its own tests and runs its own commands."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

TIMEOUT = 90


def _env() -> dict[str, str]:
    # The child must see the project's own settings and pytest configuration, not ours.
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIOSITE_", "PYTEST_"))
    }


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # subprocess.run kills the child when the timeout expires.
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_new_project_passes_its_own_tests(tmp_path: Path) -> None:
    created = _run("-m", "aiosite", "new", "e2esite", str(tmp_path / "e2esite"), cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    project = tmp_path / "e2esite"

    tests = _run("-m", "pytest", "-q", cwd=project)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    summary = tests.stdout.strip().splitlines()[-1]
    counts = dict((word, int(n)) for n, word in re.findall(r"(\d+) (\w+)", summary))
    assert counts.get("passed", 0) >= 3, summary
    assert set(counts) <= {"passed"}, summary  # no failed, error, skipped or warnings

    added = _run("-m", "aiosite", "startapp", "blog", cwd=project)
    assert added.returncode == 0, added.stderr
    routes = _run("-m", "e2esite", "routes", cwd=project)
    assert routes.returncode == 0, routes.stderr
    rows = [line.split() for line in routes.stdout.splitlines()[1:]]
    table = {row[2]: row[1] for row in rows if len(row) >= 3}
    assert table["home:index"] == "/"
    assert table["blog:index"] == "/blog/"

    tests = _run("-m", "pytest", "-q", cwd=project)
    assert tests.returncode == 0, tests.stdout + tests.stderr


def test_example_site_passes_its_tests() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "blog"
    tests = _run("-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=example)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert re.search(r"\b\d+ passed\b", tests.stdout.strip().splitlines()[-1]), tests.stdout


def test_new_project_migrates_its_database(tmp_path: Path) -> None:
    created = _run("-m", "aiosite", "new", "dbsite", str(tmp_path / "dbsite"), cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    project = tmp_path / "dbsite"

    migrated = _run("-m", "aiosite", "db", "migrate", cwd=project)
    assert migrated.returncode == 0, migrated.stderr
    assert "No migrations to apply" in migrated.stdout
    assert (project / "var" / "db.sqlite3").is_file()  # database.url's default

    # The home app has no models: nothing to migrate, and no file written.
    made = _run("-m", "dbsite", "db", "makemigrations", "-m", "initial", cwd=project)
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == "No changes detected."
    assert not list((project / "migrations" / "versions").glob("*.py"))
    checked = _run("-m", "aiosite", "db", "check", cwd=project)
    assert checked.returncode == 0, checked.stdout + checked.stderr
