"""The example blog under ``aiosite serve`` for the soak: its own PostgreSQL database
(created, migrated, seeded with the demo fixture and a user for writes) and its own Redis
database number for sessions and the broadcast hub.

Everything the site writes outside its database goes to a temporary directory of the run
where aiosite has a setting for it, so that a test of the same example running beside
the soak is not disturbed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import asyncpg
import redis.asyncio as redis
from tfb.servers import BENCH, StartError, children, free_port, stop_process

PROJECT = BENCH.parent / "examples" / "blog"
FIXTURE = "blogsite/blog/fixtures/demo.yaml"
READY_TIMEOUT = 90.0
# The writer created for the soak, and demo accounts that comment too (demo.yaml: their
# password is "aiosite-demo"): several sessions in Redis rather than one.
SOAK_USER = ("soak", "soak-writer-password-1")
DEMO_WRITERS = (("margaret", "aiosite-demo"), ("ken", "aiosite-demo"), ("barbara", "aiosite-demo"))


@dataclass
class Services:
    postgres_server: str  # postgresql://root@127.0.0.1:5432
    database: str  # a database of the soak's own
    redis_url: str  # redis://127.0.0.1:6379/<db of its own>
    key_prefix: str  # every Redis key of the run starts with it

    @property
    def database_url(self) -> str:
        return f"{self.postgres_server}/{self.database}"


def environment(services: Services, scratch: Path, extra_settings: set[str]) -> dict[str, str]:
    # AIOSITE_* from the caller's shell must not leak into the site.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOSITE_")}
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "AIOSITE_ENV": "production",
            "AIOSITE_SECURITY__SECRET_KEY": secrets.token_urlsafe(50),
            "AIOSITE_DATABASE__URL": services.database_url,
            "AIOSITE_REDIS__URL": services.redis_url,
            "AIOSITE_SESSION__BACKEND": "redis",
            "AIOSITE_SESSION__REDIS_PREFIX": services.key_prefix + "session:",
            # Two workers: the hub must reach both (comments publish nothing; chat and new
            # posts would).
            "AIOSITE_CHANNELS__BACKEND": "redis",
            # The comment form allows each user 5 comments a minute; the soak's handful of
            # writers comment far faster. ratelimit.enabled is the switch for load tests.
            "AIOSITE_RATELIMIT__ENABLED": "false",
        }
    )
    # Settings that exist only once their part of aiosite does: set when present.
    if "metrics.multiprocess_dir" in extra_settings:
        env["AIOSITE_METRICS__MULTIPROCESS_DIR"] = str(scratch / "prometheus")
    if "static.root" in extra_settings:
        env["AIOSITE_STATIC__ROOT"] = str(scratch / "static_root")
    return env


def known_settings(python: str) -> set[str]:
    """Which of the optional settings this aiosite has (``section.key``)."""
    script = (
        "import json\n"
        "from aiosite.site import load_settings\n"
        "out = []\n"
        "for name, f in type(load_settings('.', 'test')).model_fields.items():\n"
        "    sub = getattr(f.annotation, 'model_fields', {})\n"
        "    out += [f'{name}.{k}' for k in sub]\n"
        "print(json.dumps(out))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOSITE_")}
    done = subprocess.run(
        [python, "-c", script], capture_output=True, text=True, cwd=PROJECT, env=env
    )
    if done.returncode != 0:
        return set()
    return set(json.loads(done.stdout))


def aiosite(python: str, env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    command = [python, "-m", "aiosite", "--project", str(PROJECT), *args]
    done = subprocess.run(command, env=env, input=stdin, capture_output=True, text=True)
    if done.returncode != 0:
        raise StartError(f"`aiosite {' '.join(args)}` failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def has_command(python: str, env: dict[str, str], name: str) -> bool:
    done = subprocess.run(
        [python, "-m", "aiosite", "--project", str(PROJECT), name, "--help"],
        env=env,
        capture_output=True,
        text=True,
    )
    return done.returncode == 0


# --- the database and Redis ---------------------------------------------------------


async def create_database(services: Services) -> None:
    conn = await asyncpg.connect(services.postgres_server + "/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{services.database}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{services.database}"')
    finally:
        await conn.close()


async def drop_database(services: Services) -> None:
    conn = await asyncpg.connect(services.postgres_server + "/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{services.database}" WITH (FORCE)')
    finally:
        await conn.close()


async def published_slugs(services: Services) -> list[str]:
    conn = await asyncpg.connect(services.database_url)
    try:
        rows = await conn.fetch("SELECT slug FROM blog_post WHERE published ORDER BY id")
    finally:
        await conn.close()
    return [r["slug"] for r in rows]


async def comments_found(services: Services, ids: list[int], run_id: str) -> dict[str, int]:
    """How many of the acknowledged comments are in the database, and how many of the
    run's comments it holds in all (a write whose answer was lost may be there too)."""
    conn = await asyncpg.connect(services.database_url)
    try:
        found = await conn.fetchval(
            "SELECT count(*) FROM blog_comment WHERE id = ANY($1::int[])", ids
        )
        stored = await conn.fetchval(
            "SELECT count(*) FROM blog_comment WHERE body LIKE $1", f"soak {run_id} %"
        )
    finally:
        await conn.close()
    return {"acknowledged": len(ids), "acknowledged_found": found, "stored_by_run": stored}


async def redis_keys(services: Services) -> int:
    client = redis.Redis.from_url(services.redis_url)
    try:
        return len([k async for k in client.scan_iter(match=services.key_prefix + "*")])
    finally:
        await client.aclose()


async def delete_redis_keys(services: Services) -> None:
    """The run's keys only: the Redis server and the other keys of its db are shared."""
    client = redis.Redis.from_url(services.redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=services.key_prefix + "*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def prepare(python: str, env: dict[str, str], services: Services) -> list[str]:
    """Create, migrate and seed the database; add the soak's user; collect static files
    when this aiosite has collectstatic. Returns what was done, for the results."""
    asyncio.run(create_database(services))
    steps = ["created database " + services.database]
    aiosite(python, env, "db", "migrate")
    steps.append("aiosite db migrate")
    aiosite(python, env, "db", "seed", FIXTURE)
    steps.append(f"aiosite db seed {FIXTURE}")
    username, password = SOAK_USER
    aiosite(
        python,
        env,
        *("createsuperuser", "--username", username, "--email", "soak@example.com"),
        *("--password-stdin", "--no-input"),
        stdin=password + "\n",
    )
    steps.append(f"aiosite createsuperuser --username {username}")
    if has_command(python, env, "collectstatic"):
        aiosite(python, env, "collectstatic")
        steps.append("aiosite collectstatic")
    return steps


# --- the server ---------------------------------------------------------------------


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    port: int
    log: IO[bytes]
    command: list[str]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workers(self) -> list[int]:
        """gunicorn's workers: the master's children."""
        return children(self.proc.pid)

    def output_tail(self, lines: int = 30) -> str:
        self.log.flush()
        text = Path(self.log.name).read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def log_digest(self, keep: int = 3) -> dict[str, Any]:
        """The server's output but its access log: lines counted by level and logger,
        the first ``keep`` of each as they are."""
        self.log.flush()
        counts: Counter[str] = Counter()
        samples: dict[str, list[str]] = {}
        access = 0
        with open(self.log.name, errors="replace") as lines:
            for line in lines:
                try:
                    entry = json.loads(line)
                except ValueError:
                    entry = None
                if isinstance(entry, dict) and entry.get("logger") == "aiosite.access":
                    access += 1
                    continue
                group = (
                    f"{entry.get('level')} {entry.get('logger')}"
                    if isinstance(entry, dict)
                    else "(not JSON)"
                )
                counts[group] += 1
                if counts[group] <= keep:
                    samples.setdefault(group, []).append(line.rstrip()[:1000])
        return {
            "bytes": Path(self.log.name).stat().st_size,
            "access_lines": access,
            "other_lines": dict(counts),
            "samples": samples,
        }


@contextlib.contextmanager
def serve(
    python: str, env: dict[str, str], workers: int, cpu: str | None, scratch: Path
) -> Iterator[Served]:
    port = free_port()
    command = [
        python,
        *("-m", "aiosite", "--project", str(PROJECT), "serve"),
        *("--workers", str(workers), "--bind", f"127.0.0.1:{port}"),
    ]
    if cpu is not None:
        command = ["taskset", "-c", cpu, *command]
    log = (scratch / "serve.log").open("w+b")
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    served = Served(proc, port, log, command)
    try:
        wait_ready(served, workers)
        yield served
    finally:
        stop_process(proc)
        log.close()


def wait_ready(served: Served, workers: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        code = served.proc.poll()
        if code is not None:
            raise StartError(f"aiosite serve exited with {code}:\n{served.output_tail()}")
        if time.monotonic() > deadline:
            raise StartError(
                f"aiosite serve did not answer /healthz with {workers} workers within "
                f"{READY_TIMEOUT:.0f} s:\n{served.output_tail()}"
            )
        if len(served.workers()) >= workers and _healthy(served.base + "/healthz"):
            return
        time.sleep(0.2)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (127.0.0.1)
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def rss_kib(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return int(found.group(1)) if found else None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of ``pid``, from /proc/PID/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def wait_seconds(pid: int) -> float | None:
    """Time ``pid`` spent ready to run but waiting for a CPU, from /proc/PID/schedstat."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def scratch_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="aiosite-soak-")
