"""Startup time: from process start to the first answered HTTP request (any status).

    python -m tfb.startup [--python bench/.venv/bin/python] [--runs 5]

(a) the example blog (a fresh copy of examples/blog, migrated first) served by
``aiosite run --no-reload`` with AIOSITE_ENV=production, and (b) a fresh
``django-admin startproject`` served by ``gunicorn --workers 1``. The two alternate; one
untimed start of each comes first, so that both import from compiled .pyc files as a
deployed site does.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfb import servers

BLOG = servers.BENCH.parent / "examples" / "blog"
RUNS = 5
TIMEOUT = 60.0
POLL = 0.005


@dataclass(frozen=True)
class Case:
    name: str
    argv: Callable[[int], list[str]]  # the command for a port
    cwd: Path
    env: dict[str, str]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIOSITE_", "DJANGO_"))}
    env.update(extra)
    return env


def blog_case(python: str, root: Path) -> Case:
    copy = root / "blog"
    shutil.copytree(
        BLOG, copy, ignore=shutil.ignore_patterns("var", "__pycache__", "*.sqlite3", ".*_cache")
    )
    # Production refuses to start without a secret key of its own.
    key = secrets.token_urlsafe(50)
    env = clean_env(AIOSITE_ENV="production", AIOSITE_SECURITY__SECRET_KEY=key)
    aiosite = [python, "-m", "aiosite", "--project", str(copy)]
    subprocess.run([*aiosite, "db", "migrate"], cwd=copy, env=env, check=True, capture_output=True)
    return Case(
        "aiosite blog",
        lambda port: [*aiosite, "run", "--no-reload", "--host", "127.0.0.1", "--port", str(port)],
        copy,
        env,
    )


def django_case(python: str, root: Path) -> Case:
    project = root / "django"
    project.mkdir()
    subprocess.run(
        [python, "-m", "django", "startproject", "project", str(project)],
        check=True,
        capture_output=True,
    )
    return Case(
        "django startproject",
        lambda port: [
            python,
            "-m",
            "gunicorn",
            "--workers",
            "1",
            "--bind",
            f"127.0.0.1:{port}",
            "project.wsgi",
        ],
        project,
        clean_env(),
    )


def time_to_first_response(case: Case) -> float:
    """Seconds from Popen to the first bytes of an HTTP answer to GET /."""
    port = servers.free_port()
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        proc = subprocess.Popen(
            case.argv(port),
            cwd=case.cwd,
            env=case.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            while not answers(port):
                if proc.poll() is not None or time.perf_counter() - started > TIMEOUT:
                    log.seek(0)
                    tail = log.read().decode(errors="replace")[-2000:]
                    raise RuntimeError(f"{case.name} did not answer (exit {proc.poll()}):\n{tail}")
                time.sleep(POLL)
            return time.perf_counter() - started
        finally:
            servers.stop_process(proc)


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            return sock.recv(16).startswith(b"HTTP/")
    except OSError:
        return False


def measure(python: str = str(servers.BENCH_PYTHON), runs: int = RUNS) -> dict[str, Any]:
    """Median and minimum startup seconds of each case, over ``runs`` alternating starts."""
    with tempfile.TemporaryDirectory(prefix="tfb-startup-") as tmp:
        cases = [blog_case(python, Path(tmp)), django_case(python, Path(tmp))]
        for case in cases:
            time_to_first_response(case)  # untimed: writes the .pyc files
        times: dict[str, list[float]] = {case.name: [] for case in cases}
        for _ in range(runs):
            for case in cases:
                times[case.name].append(time_to_first_response(case))
    return {
        name: {"median_s": statistics.median(ts), "min_s": min(ts), "runs_s": ts}
        for name, ts in times.items()
    }


def table(results: dict[str, Any]) -> str:
    lines = ["| app | median | min | runs |", "| --- | ---: | ---: | ---: |"]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['median_s'] * 1000:.0f} ms | {r['min_s'] * 1000:.0f} ms "
            f"| {len(r['runs_s'])} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=str(servers.BENCH_PYTHON))
    parser.add_argument("--runs", type=int, default=RUNS)
    args = parser.parse_args(argv)
    print(table(measure(args.python, args.runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
