"""`make demo` on a fresh copy of the example: migrates, seeds and serves the blog."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from markupsafe import escape

from tests.e2e.test_run import clean_env, free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "blog"


def fetch(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our server
        return response.status, response.read().decode()


def test_make_demo_serves_the_seeded_blog(tmp_path: Path) -> None:
    demo = tmp_path / "blog"
    shutil.copytree(EXAMPLE, demo, ignore=shutil.ignore_patterns("var", "__pycache__"))
    fixtures = yaml.safe_load((demo / "blogsite/blog/fixtures/demo.yaml").read_text())
    newest = max(
        (post for post in fixtures["blog.Post"] if post["published"]),
        key=lambda post: post["created"],
    )
    port = free_port()
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["make", "-s", "-C", str(ROOT), "demo", f"DEMO_DIR={demo}", f"PORT={port}"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=clean_env(),
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                status, page = fetch(f"http://127.0.0.1:{port}/blog/")
                break
            except OSError:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        assert status == 200
        assert str(escape(newest["title"])) in page
        assert (demo / "var" / "db.sqlite3").is_file()
        _, api = fetch(f"http://127.0.0.1:{port}/api/posts")
        assert f'"total":{sum(p["published"] for p in fixtures["blog.Post"])}' in api
        # Accounts: the login page of aiosite.contrib.auth, in the site's own layout.
        status, login = fetch(f"http://127.0.0.1:{port}/auth/login")
        assert status == 200
        assert 'name="csrf_token"' in login
        assert "Sign up</a>" in login
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    output = log.read_text()
    assert "auth.User: " in output, output
    assert "blog.Post: " in output, output
    assert "Traceback" not in output, output
