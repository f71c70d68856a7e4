"""A project made by ``aiosite new`` passes its own tests and runs its own commands."""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from aiosite.scaffold import create_project

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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _home_page(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
            return str(resp.read().decode())
    except (urllib.error.URLError, OSError):
        return None


def test_new_project_in_production_needs_its_own_secret_key(tmp_path: Path) -> None:
    project = create_project("livesite", tmp_path / "livesite")
    run = ["-m", "livesite", "--env", "production", "run", "--no-reload"]

    refused = _run(*run, "--port", str(_free_port()), cwd=project)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr.startswith("error: security.secret_key: missing; set it in ")
    assert "AIOSITE_SECURITY__SECRET_KEY" in refused.stderr
    # A public site serves the static files gathered by collectstatic.
    collected = _run("-m", "livesite", "--env", "production", "collectstatic", cwd=project)
    assert collected.returncode == 0, collected.stderr

    port = _free_port()
    env = {**_env(), "AIOSITE_SECURITY__SECRET_KEY": secrets.token_urlsafe(50)}
    # The server's own process group, so that stopping it stops anything it started.
    server = subprocess.Popen(
        [sys.executable, *run, "--port", str(port)],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        body = None
        while body is None and server.poll() is None and time.monotonic() < deadline:
            body = _home_page(port)
            time.sleep(0.1)
        assert body is not None, f"no answer (exit {server.poll()})"
        assert "Welcome to Livesite" in body
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        _, err = server.communicate(timeout=TIMEOUT)
    assert "Traceback" not in err.decode()
