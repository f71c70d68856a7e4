"""Websocket broadcast under load: aiosite's hub against a hand-written aiohttp peer.

    python -m ws.run [--quick] [--rounds 3] [--backends memory redis postgres]
                     [--subscribers 1000] [--messages 1000] [--window 64]
                     [--rate 20] [--rate-messages 200] [--idle 1000]
                     [--no-memory | --no-load] [--report results/ws-DATE.json]

Per backend, both implementations run side by side (each its own processes, pinned to
CPU 1 with taskset); the load driver (``ws.driver``, a process of its own) runs on CPU 0
with Redis and PostgreSQL (their processes are pinned there for the run and given their
CPUs back after it). memory: one server process holds the 1,000 subscribers. redis and
postgres: two server processes hold 500 each, and the publisher's messages go into the
first, so every message crosses the backend. Rounds are interleaved (the order of the
servers rotates each round) and the medians reported:

- messages/s delivered to all subscribers, at full speed with at most --window messages
  in flight (deliveries/s = that x subscribers), and the servers' CPU time per delivery;
- p50/p99 latency from publish to delivery at a fixed --rate (messages/s);
- memory per idle websocket: a fresh server's RSS (VmRSS) before and after --idle
  subscribers connect, each time after a garbage collection and a settle.

Results: a table, and bench/results/ws-<date>.json (``-quick`` appended for --quick);
``--report`` prints the tables of a results file again. Exits 1 when a run failed or a
subscriber missed, repeated or reordered a message.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from tfb.run import _table, can_pin, cpu_model, postgres_pids, taskset_all_threads, versions
from tfb.servers import BENCH, BENCH_PYTHON, StartError

from ws import servers
from ws.servers import BASELINE, NAMES, Backend, Group

RESULTS = BENCH / "results"
SERVER_CPU, DRIVER_CPU = "1", "0"
# Processes per implementation on each backend.
PROCESSES = {"memory": 1, "redis": 2, "postgres": 2}
LABELS = {
    "memory": "in-process (memory), 1 process",
    "redis": "Redis pub/sub, 2 processes",
    "postgres": "PostgreSQL LISTEN/NOTIFY, 2 processes",
}
TARGET_RATE, TARGET_MEMORY = 0.9, 1.2
PACKAGES = ("aiosite", "aiohttp", "uvloop", "orjson", "redis", "asyncpg")
SETTLE = 2.0


def pinned(cpu: str, command: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *command] if can_pin() else command


def driver_command(mode: str, group: Group, args: argparse.Namespace) -> list[str]:
    command = [
        str(args.python),
        *("-m", "ws.driver", mode),
        *("--subscribe", *group.subscribe_urls()),
        *("--stats", *group.stats_urls()),
    ]
    if mode == "idle":
        return pinned(DRIVER_CPU, [*command, "--subscribers", str(args.idle)])
    return pinned(
        DRIVER_CPU,
        [
            *command,
            *("--publish", group.publish_url()),
            *("--subscribers", str(args.subscribers)),
            *("--warmup", str(args.warmup)),
            *("--messages", str(args.messages)),
            *("--window", str(args.window)),
            *("--rate", str(args.rate)),
            *("--rate-messages", str(args.rate_messages)),
            *("--size", str(args.size)),
            *("--pids", *map(str, group.pids)),
        ],
    )


def load_run(group: Group, round_: int, args: argparse.Namespace) -> dict[str, Any]:
    run: dict[str, Any] = {"server": group.name, "backend": group.backend.name, "round": round_}
    try:
        servers.wait_empty(group)
    except (OSError, StartError) as exc:  # a server died or kept the last run's sockets
        run["error"] = f"not measured: {exc}"
        print(f"round {round_} {group.backend.name:8} {group.name:12} FAILED: {run['error']}")
        return run
    done = subprocess.run(
        driver_command("load", group, args), cwd=BENCH, capture_output=True, text=True
    )
    if done.returncode != 0:
        tails = "\n".join(f"--- {s.name} {s.pid}\n{s.output_tail(10)}" for s in group.servers)
        run["error"] = f"driver exited with {done.returncode}:\n{done.stderr[-3000:]}\n{tails}"
        print(f"round {round_} {group.backend.name:8} {group.name:12} FAILED\n{run['error']}")
        return run
    run.update(json.loads(done.stdout.strip().splitlines()[-1]))
    if "error" in run:
        print(f"round {round_} {group.backend.name:8} {group.name:12} FAILED: {run['error']}")
        return run
    t, lat, errors = run["throughput"], run["latency"], run["errors"]
    bad = {k: v for k, v in errors.items() if v}
    print(
        f"round {round_} {group.backend.name:8} {group.name:12} "
        f"{t['messages_per_s']:8,.1f} msg/s ({t['deliveries_per_s']:9,.0f} deliveries/s) "
        f"cpu {t['server_cpu_us_per_delivery']:5.1f} us/delivery (busy "
        f"{t['server_cpu_percent']:3.0f}%, waited {t['server_cpu_wait_percent']:3.0f}%), "
        f"driver {t['driver_cpu_percent']:3.0f}% | at {lat['rate']:g}/s "
        f"p50 {lat['p50_ms']:6.1f} ms "
        f"p99 {lat['p99_ms']:6.1f} ms" + (f"  ERRORS {bad}" if bad else ""),
        flush=True,
    )
    return run


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return int(found.group(1)) if found else 0


def settled_rss(server: servers.Server) -> int:
    """RSS after a settle and a full garbage collection in the server."""
    time.sleep(SETTLE / 2)
    servers.fetch_json(server.url("/gc"))
    time.sleep(SETTLE / 2)
    return rss_kib(server.pid)


def idle_memory(
    name: str, backend: Backend, round_: int, args: argparse.Namespace
) -> dict[str, Any]:
    """A fresh server's memory per idle websocket."""
    with servers.group(name, backend, 1, python=args.python, cpu=SERVER_CPU) as group:
        server = group.servers[0]
        before = settled_rss(server)
        driver = subprocess.Popen(
            driver_command("idle", group, args),
            cwd=BENCH,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert driver.stdin is not None
        assert driver.stdout is not None
        try:
            line = driver.stdout.readline().strip()
            if line != "ready":
                raise StartError(f"the idle driver said {line!r}: {driver.communicate()[1]}")
            after = settled_rss(server)
        finally:
            driver.stdin.close()
            driver.wait(timeout=60)
    per = (after - before) / args.idle
    print(
        f"round {round_} idle     {name:12} RSS {before / 1024:6.1f} -> {after / 1024:6.1f} MiB "
        f"with {args.idle} idle websockets: {per:5.1f} KiB each",
        flush=True,
    )
    return {
        "server": name,
        "round": round_,
        "connections": args.idle,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_connection": per,
    }


# --- Redis and PostgreSQL on the driver's CPU ---------------------------------------


def redis_pids() -> list[int]:
    found = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError, ValueError):
            if comm.read_text().strip() == "redis-server":
                found.append(int(comm.parent.name))
    return found


@contextlib.contextmanager
def services_pinned(cpu: str) -> Iterator[None]:
    """Redis's and PostgreSQL's processes on ``cpu`` (new backends inherit it); each
    given back the CPUs it had after."""
    if not can_pin():
        yield
        return
    every = set(range(os.cpu_count() or 1))
    saved: dict[int, set[int]] = {}
    for pid in [*postgres_pids(), *redis_pids()]:
        with contextlib.suppress(OSError):
            saved[pid] = os.sched_getaffinity(pid)
            taskset_all_threads(cpu, pid)
    try:
        yield
    finally:
        for pid in [*postgres_pids(), *redis_pids()]:
            cpus = saved.get(pid, every)
            taskset_all_threads(",".join(map(str, sorted(cpus))), pid)


# --- summary and output -------------------------------------------------------------


def summarise(runs: Sequence[dict[str, Any]], idle: Sequence[dict[str, Any]]) -> dict[str, Any]:
    def median(values: list[float]) -> float | None:
        return statistics.median(values) if values else None

    load: dict[str, dict[str, Any]] = {}
    for backend in dict.fromkeys(r["backend"] for r in runs):
        per: dict[str, Any] = {}
        for name in NAMES:
            mine = [r for r in runs if r["backend"] == backend and r["server"] == name]
            ok = [r for r in mine if "error" not in r]
            per[name] = {
                "messages_per_s": median([r["throughput"]["messages_per_s"] for r in ok]),
                "deliveries_per_s": median([r["throughput"]["deliveries_per_s"] for r in ok]),
                "cpu_us_per_delivery": median(
                    [r["throughput"]["server_cpu_us_per_delivery"] for r in ok]
                ),
                "rate_cpu_us_per_delivery": median(
                    [r["latency"]["server_cpu_us_per_delivery"] for r in ok]
                ),
                "p50_ms": median([r["latency"]["p50_ms"] for r in ok]),
                "p99_ms": median([r["latency"]["p99_ms"] for r in ok]),
                "saturated_p50_ms": median([r["throughput"]["p50_ms"] for r in ok]),
                "saturated_p99_ms": median([r["throughput"]["p99_ms"] for r in ok]),
                # Time the servers were ready to run but another process had the CPU
                # (in a two-process run, also each other).
                "server_cpu_wait_percent": median(
                    [r["throughput"]["server_cpu_wait_percent"] for r in ok]
                ),
                "max_driver_cpu_percent": max(
                    (r["throughput"]["driver_cpu_percent"] for r in ok), default=None
                ),
                "all_messages_per_s": [r["throughput"]["messages_per_s"] for r in ok],
                "failed_runs": len(mine) - len(ok),
                "delivery_errors": sum(sum(r["errors"].values()) for r in ok),
            }
        base, ours = per[BASELINE]["deliveries_per_s"], per["aiosite"]["deliveries_per_s"]
        per["ratio"] = ours / base if base and ours else None
        load[backend] = per
    memory: dict[str, Any] = {}
    for name in NAMES:
        values = [m["kib_per_connection"] for m in idle if m["server"] == name]
        memory[name] = {"kib_per_connection": median(values), "all": values}
    base_kib = memory[BASELINE]["kib_per_connection"]
    our_kib = memory["aiosite"]["kib_per_connection"]
    memory["ratio"] = our_kib / base_kib if base_kib and our_kib else None
    return {"load": load, "memory": memory}


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def load_table(summary: dict[str, Any], rate: float, subscribers: int) -> str:
    def cell(s: dict[str, Any]) -> str:
        if s["messages_per_s"] is None:
            return "failed"
        flag = f" ({s['delivery_errors']} delivery errors!)" if s["delivery_errors"] else ""
        return (
            f"{s['messages_per_s']:,.1f} ({s['deliveries_per_s']:,.0f}/s) "
            f"p50 {s['p50_ms']:.1f} ms p99 {s['p99_ms']:.1f} ms{flag}"
        )

    rows = [
        [LABELS[b], cell(per["aiosite"]), cell(per[BASELINE]), _ratio(per["ratio"])]
        for b, per in summary["load"].items()
    ]
    return _table(["backend", "aiosite", BASELINE, "aiosite / peer"], rows)


def cpu_table(summary: dict[str, Any], rate: float) -> str:
    def cells(per: dict[str, Any], key: str) -> list[str]:
        ours, base = per["aiosite"][key], per[BASELINE][key]
        shown = ["-" if v is None else f"{v:.1f} µs" for v in (ours, base)]
        return [*shown, _ratio(ours / base if ours and base else None)]

    rows = [
        [
            LABELS[b],
            *cells(per, "cpu_us_per_delivery"),
            *cells(per, "rate_cpu_us_per_delivery"),
        ]
        for b, per in summary["load"].items()
    ]
    at = f"at {rate:g}/s"
    header = ["backend", "aiosite full speed", f"{BASELINE} full speed", "ratio"]
    return _table([*header, f"aiosite {at}", f"{BASELINE} {at}", "ratio"], rows)


def memory_table(summary: dict[str, Any], connections: int) -> str:
    memory = summary["memory"]

    def cell(name: str) -> str:
        v = memory[name]["kib_per_connection"]
        return "-" if v is None else f"{v:.1f} KiB"

    row = [f"per idle websocket ({connections:,})", cell("aiosite"), cell(BASELINE)]
    header = ["memory", "aiosite", BASELINE, "aiosite / peer"]
    return _table(header, [[*row, _ratio(memory["ratio"])]])


def report(summary: dict[str, Any], rounds: int, subscribers: int, rate: float, idle: int) -> None:
    print(
        f"\nmessages/s delivered to all {subscribers:,} subscribers (deliveries/s), "
        f"median of {rounds}; p50/p99 publish-to-delivery latency at {rate:g} messages/s\n"
    )
    print(load_table(summary, rate, subscribers))
    print("\nservers' CPU time per delivery (median)\n")
    print(cpu_table(summary, rate))
    if summary["memory"]["ratio"] is not None:
        print("\nmemory per idle websocket (RSS after - before, / connections; median)\n")
        print(memory_table(summary, idle))
    print()
    for line in targets(summary):
        print(line)


def report_again(path: Path) -> None:
    """Summarise a results file again (the runs are kept whole) and print its tables."""
    result = json.loads(path.read_text())
    settings = result["settings"]
    summary = summarise(result["runs"], result["idle"])
    result["summary"], result["targets"] = summary, targets(summary)
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    report(
        summary,
        settings["rounds"],
        settings["subscribers"],
        settings["latency_rate"],
        settings["idle_connections"],
    )


def targets(summary: dict[str, Any]) -> list[str]:
    lines = []
    rate = summary["load"].get("memory", {}).get("ratio")
    if rate is not None:
        verdict = "met" if rate >= TARGET_RATE else "MISSED"
        lines.append(f"in-process messages/s >= {TARGET_RATE}x the peer's: {rate:.2f}x, {verdict}")
    kib = summary["memory"]["ratio"]
    if kib is not None:
        verdict = "met" if kib <= TARGET_MEMORY else "MISSED"
        lines.append(
            f"memory per idle websocket <= {TARGET_MEMORY}x the peer's: {kib:.2f}x, {verdict}"
        )
    return lines


def source_info() -> dict[str, Any]:
    """Which aiosite was measured: the commit, and a hash of the channels and server code
    as it is on disk (it may be ahead of the commit)."""
    src = BENCH.parent / "src" / "aiosite"
    digest = hashlib.sha256()
    for path in sorted([*src.glob("channels/*.py"), *src.glob("server/*.py")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    head = subprocess.run(
        ["git", "-C", str(BENCH.parent), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    return {
        "commit": head.stdout.strip() or None,
        "channels_and_server_sha256": digest.hexdigest(),
    }


def machine_info() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "processor": cpu_model(),
        "platform": platform.platform(),
        "redis": asyncio.run(_redis_version()),
        "postgresql": asyncio.run(_postgres_version()),
    }


async def _redis_version() -> str | None:
    import redis.asyncio as redis

    client = redis.Redis.from_url(servers.redis_url())
    try:
        return str((await client.info("server"))["redis_version"])
    except (OSError, redis.RedisError):
        return None
    finally:
        await client.aclose()


async def _postgres_version() -> str | None:
    import asyncpg

    try:
        conn = await asyncpg.connect(servers.postgres_server() + "/postgres")
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


# --- main ---------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round, fewer messages")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", nargs="+", default=list(servers.BACKENDS))
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100, help="messages before measuring")
    parser.add_argument("--messages", type=int, default=1000, help="at full speed")
    parser.add_argument("--window", type=int, default=64, help="messages in flight at most")
    parser.add_argument("--rate", type=float, default=20.0, help="messages/s for latency")
    parser.add_argument("--rate-messages", type=int, default=200)
    parser.add_argument("--size", type=int, default=128, help="bytes of JSON per message")
    parser.add_argument("--idle", type=int, default=1000, help="idle websockets for memory")
    parser.add_argument("--no-memory", action="store_true", help="skip memory per websocket")
    parser.add_argument("--no-load", action="store_true", help="only memory per websocket")
    parser.add_argument("--python", default=str(BENCH_PYTHON), help="the servers' python")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--report", type=Path, metavar="JSON", help="only summarise a results file again"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.warmup, args.messages, args.rate_messages = 1, 50, 300, 60
    args.backends = [b for arg in args.backends for b in arg.split(",") if b]
    unknown = set(args.backends) - set(servers.BACKENDS)
    if unknown:
        parser.error(f"unknown backend(s) {sorted(unknown)}; known: {' '.join(servers.BACKENDS)}")
    return args


def _terminate(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report is not None:
        report_again(args.report)
        return 0
    if can_pin() and shutil.which("taskset") is None:
        sys.exit("missing taskset: `sudo apt-get install -y util-linux`")
    signal.signal(signal.SIGTERM, _terminate)
    server_cpu = SERVER_CPU if can_pin() else None
    started_at = dt.datetime.now(dt.UTC)
    source = source_info()
    runs: list[dict[str, Any]] = []
    idle: list[dict[str, Any]] = []
    backend_names = [] if args.no_load else args.backends
    with services_pinned(DRIVER_CPU), servers.backends(backend_names) as found:
        for name, backend in found.items():
            processes = PROCESSES[name]
            with contextlib.ExitStack() as stack:
                groups = [
                    stack.enter_context(
                        servers.group(impl, backend, processes, python=args.python, cpu=server_cpu)
                    )
                    for impl in NAMES
                ]
                for n in range(args.rounds):
                    shift = n % len(groups)
                    for group in groups[shift:] + groups[:shift]:
                        runs.append(load_run(group, n + 1, args))
        if not args.no_memory:
            memory = Backend("memory", None, "wsbench_idle")
            for n in range(args.rounds):
                order = NAMES[n % 2 :] + NAMES[: n % 2]
                for impl in order:
                    idle.append(idle_memory(impl, memory, n + 1, args))

    summary = summarise(runs, idle)
    report(summary, args.rounds, args.subscribers, args.rate, args.idle)

    args.out.mkdir(parents=True, exist_ok=True)
    stem = "ws-" + started_at.date().isoformat() + ("-quick" if args.quick else "")
    result = {
        "date": started_at.isoformat(timespec="seconds"),
        "command": " ".join(["python -m ws.run", *(argv if argv is not None else sys.argv[1:])]),
        "settings": {
            "rounds": args.rounds,
            "subscribers": args.subscribers,
            "warmup_messages": args.warmup,
            "messages": args.messages,
            "window": args.window,
            "latency_rate": args.rate,
            "latency_messages": args.rate_messages,
            "message_bytes": args.size,
            "idle_connections": args.idle,
            "processes": {b: PROCESSES[b] for b in args.backends},
            "server_cpu": server_cpu,
            "driver_redis_postgresql_cpu": DRIVER_CPU if server_cpu else None,
            "baseline": BASELINE,
        },
        "machine": machine_info(),
        "versions": versions(args.python, PACKAGES),
        "source": source,
        "summary": summary,
        "targets": targets(summary),
        "runs": runs,
        "idle": idle,
    }
    path = args.out / f"{stem}.json"
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwritten to {path}")
    failed = any("error" in r or any(r["errors"].values()) for r in runs)
    if failed:
        print("some runs failed or lost, repeated or reordered messages (see above)")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit("interrupted: servers stopped, Redis and PostgreSQL back on their CPUs")
