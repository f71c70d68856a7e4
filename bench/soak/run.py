"""Soak: the example blog under ``aiosite serve --workers 2`` at about 80% of its measured
peak for 10 minutes, on a mixed read/write workload.

    python -m soak.run [--duration 600] [--rate R] [--share 0.8] [--peak-seconds 20]
                       [--connections 32] [--workers 2] [--pin] [--keep-database]

The blog runs on PostgreSQL (a database of the run's own: created, migrated, seeded with
the demo fixture and a user for writes, dropped afterwards) with Redis sessions and the
Redis broadcast hub (a Redis db number of its own; the run's keys deleted afterwards).
Nothing is pinned by default: two workers on a two-CPU machine is one per CPU, as in
production, and the driver (a few percent of a CPU, recorded) shares the CPUs with them,
PostgreSQL and Redis. --pin puts the server on CPU 1 and the driver, Redis and
PostgreSQL on CPU 0 (given their CPUs back after), as bench/ws does; on a machine shared
with other work, the workers' time spent waiting for a CPU (/proc/PID/schedstat) is
recorded either way, to tell a slow server from a busy machine.

1. Peak: after a warm-up, --connections clients in a closed loop for --peak-seconds send
   the mix (driver.MIX: about 80% reads of the home page, the post list, a post, a
   stylesheet and /healthz; 20% comments posted by logged-in users with their CSRF
   token): the requests a second the server answers at most.
2. Soak: --share of that peak (or --rate) as an open loop at a constant rate for
   --duration seconds; latency counts from each request's intended time.

Recorded: requests, errors (any status >= 400 or connection error), latency p50/p99/max in
all and per minute, every worker's RSS (VmRSS) every 10 s and its growth from the end of
minute 1 to the end of the run, the workers' CPU use, the load average at start and end,
and every acknowledged comment looked up in the database afterwards. Written to
bench/results/soak-<date>.json (``-<N>s`` appended for another duration than 600 s, then
``-2``, ``-3`` for later runs of the day) with a summary on stdout. Exits 1 when a
request failed, an acknowledged write is missing or the RSS grew 5% or more.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from tfb.run import can_pin, cpu_model, versions
from tfb.servers import BENCH, BENCH_PYTHON, StartError
from ws.run import services_pinned, source_info

from soak import driver, site

RESULTS = BENCH / "results"
SERVER_CPU, DRIVER_CPU = "1", "0"
SAMPLE_EVERY = 10.0
TARGET_ERRORS, TARGET_RSS_GROWTH = 0, 0.05
# Above this, the summary says the machine was busy with other work (schedstat).
BUSY_WAIT_PERCENT = 20
DEFAULT_DURATION = 600.0
PACKAGES = ("aiosite", "aiohttp", "gunicorn", "uvloop", "sqlalchemy", "asyncpg", "redis")


class Sampler:
    """Every worker's RSS and CPU time every SAMPLE_EVERY seconds of the soak."""

    def __init__(self, served: site.Served) -> None:
        self.served = served
        self.samples: list[dict[str, Any]] = []
        self.seen_workers: set[int] = set()

    async def tick(self, elapsed: float, stats: driver.Stats) -> None:
        workers = sorted(self.served.workers())
        self.seen_workers.update(workers)
        rss = {pid: site.rss_kib(pid) for pid in workers}
        sample: dict[str, Any] = {
            "t": round(elapsed, 1),
            "workers_rss_kib": {str(pid): kib for pid, kib in rss.items()},
            "rss_sum_kib": sum(kib or 0 for kib in rss.values()),
            "master_rss_kib": site.rss_kib(self.served.proc.pid),
            "workers_cpu_s": sum(site.cpu_seconds(pid) or 0.0 for pid in workers),
            "workers_wait_s": sum(site.wait_seconds(pid) or 0.0 for pid in workers),
            "requests": sum(stats.requests.values()),
            "errors": sum(stats.errors.values()),
            "load_average": os.getloadavg()[0],
        }
        self.samples.append(sample)
        if len(self.samples) % 6 == 1:
            print(
                f"  t={elapsed:5.0f} s  requests {sample['requests']:8,}  errors "
                f"{sample['errors']:4}  workers' RSS {sample['rss_sum_kib'] / 1024:7.1f} MiB  "
                f"load {sample['load_average']:.2f}",
                flush=True,
            )


def rss_growth(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """From the sample at the end of minute 1 to the last: the sum, and each worker that
    lived through both."""
    if len(samples) < 2:
        return {}
    first = next((s for s in samples if s["t"] >= 60.0 - SAMPLE_EVERY / 2), samples[-1])
    last = samples[-1]
    per_worker = {}
    for pid, kib in first["workers_rss_kib"].items():
        end = last["workers_rss_kib"].get(pid)
        if kib and end:
            per_worker[pid] = {"from_kib": kib, "to_kib": end, "growth": end / kib - 1}
    start, end = first["rss_sum_kib"], last["rss_sum_kib"]
    return {
        "from_t": first["t"],
        "to_t": last["t"],
        "from_kib": start,
        "to_kib": end,
        "growth": end / start - 1 if start else None,
        "per_worker": per_worker,
    }


def by_minute(samples: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Per minute of the soak: the workers' RSS sum at its last sample, their CPU use and
    wait for a CPU since the minute before, and the load average."""
    last: dict[int, dict[str, Any]] = {}
    for s in samples:
        last[max(1, int(-(-s["t"] // 60)))] = s
    out: dict[int, dict[str, Any]] = {}
    if not samples:
        return out
    before = samples[0]
    for minute, s in sorted(last.items()):
        span = s["t"] - before["t"]
        out[minute] = {
            "workers_rss_kib": s["rss_sum_kib"],
            "workers_cpu_percent": (
                100 * (s["workers_cpu_s"] - before["workers_cpu_s"]) / span if span else None
            ),
            "workers_wait_percent": (
                100 * (s["workers_wait_s"] - before["workers_wait_s"]) / span if span else None
            ),
            "load_average": s["load_average"],
        }
        before = s
    return out


def workers_times(served: site.Served) -> tuple[float, float]:
    """The workers' CPU time and time waiting for a CPU, in seconds."""
    pids = served.workers()
    return (
        sum(site.cpu_seconds(pid) or 0.0 for pid in pids),
        sum(site.wait_seconds(pid) or 0.0 for pid in pids),
    )


async def measure(
    served: site.Served, services: site.Services, run_id: str, args: argparse.Namespace
) -> dict[str, Any]:
    http = driver.client_session()
    try:
        slugs = await site.published_slugs(services)
        static_path = await driver.stylesheet(http, served.base)
        accounts = [site.SOAK_USER, *site.DEMO_WRITERS]
        writers = [await driver.log_in(http, served.base, u, p, slugs[0]) for u, p in accounts]
        workload = driver.Workload(driver.Site(served.base, slugs, static_path, writers, run_id))
        print(f"warm-up: {args.warmup:g} s, {args.connections} connections", flush=True)
        warm, warm_s = await driver.closed_loop(workload, http, args.connections, args.warmup)
        cpu0 = driver.driver_cpu_seconds()
        workers0 = workers_times(served)
        peak_stats, peak_s = await driver.closed_loop(
            workload, http, args.connections, args.peak_seconds
        )
        peak = driver.summary(peak_stats, peak_s)
        peak["driver_cpu_percent"] = 100 * (driver.driver_cpu_seconds() - cpu0) / peak_s
        workers1 = workers_times(served)
        peak["workers_cpu_percent"] = 100 * (workers1[0] - workers0[0]) / peak_s
        peak["workers_wait_percent"] = 100 * (workers1[1] - workers0[1]) / peak_s
        peak["load_average"] = os.getloadavg()[0]
        print(
            f"peak: {peak['requests_per_s']:,.0f} req/s ({args.connections} connections, "
            f"{peak_s:.0f} s; p99 {peak['latency']['p99_ms']:.1f} ms, "
            f"{peak['errors']} errors; workers {peak['workers_cpu_percent']:.0f}% of a CPU, "
            f"waited {peak['workers_wait_percent']:.0f}%; "
            f"driver {peak['driver_cpu_percent']:.0f}%)",
            flush=True,
        )
        rate = args.rate or round(args.share * peak["requests_per_s"])
        print(f"soak: {rate:g} req/s, open loop, for {args.duration:g} s", flush=True)
        sampler = Sampler(served)
        cpu0 = driver.driver_cpu_seconds()
        started = time.monotonic()
        soak_stats = await driver.open_loop(
            workload, http, rate, args.duration, SAMPLE_EVERY, sampler.tick
        )
        soak_s = time.monotonic() - started
        soak = driver.summary(soak_stats, soak_s)
        soak["rate"] = rate
        soak["driver_cpu_percent"] = 100 * (driver.driver_cpu_seconds() - cpu0) / soak_s
        samples = sampler.samples
        span = samples[-1]["t"] - samples[0]["t"] if len(samples) > 1 else 0
        soak["workers_cpu_percent"] = (
            100 * (samples[-1]["workers_cpu_s"] - samples[0]["workers_cpu_s"]) / span
            if span
            else None
        )
        # Time the workers were ready to run while other processes had the CPUs.
        soak["workers_wait_percent"] = (
            100 * (samples[-1]["workers_wait_s"] - samples[0]["workers_wait_s"]) / span
            if span
            else None
        )
        minutes = driver.per_minute(soak_stats)
        machine = by_minute(samples)
        for row in minutes:
            row.update(machine.get(row["minute"], {"workers_rss_kib": None}))
        return {
            "static_path": static_path,
            "writers": [w.name for w in writers],
            "warmup": {"seconds": warm_s, "requests": sum(warm.requests.values())},
            "peak": peak,
            "soak": soak,
            "per_minute": minutes,
            "rss_samples": samples,
            "rss_growth": rss_growth(samples),
            "workers_seen": sorted(sampler.seen_workers),
            "acked_ids": warm.acked_ids + peak_stats.acked_ids + soak_stats.acked_ids,
        }
    finally:
        await driver.gently_close(http)


def verdicts(result: dict[str, Any]) -> list[tuple[str, bool]]:
    soak, growth, writes = result["soak"], result["rss_growth"], result["writes"]
    lines = [
        (f"errors: {soak['errors']} (target {TARGET_ERRORS})", soak["errors"] <= TARGET_ERRORS),
        (
            f"acknowledged writes in the database: {writes['acknowledged_found']:,} of "
            f"{writes['acknowledged']:,}",
            writes["acknowledged_found"] == writes["acknowledged"],
        ),
    ]
    if growth.get("growth") is not None:
        lines.append(
            (
                f"workers' RSS growth from t={growth['from_t']:.0f} s to t={growth['to_t']:.0f} "
                f"s: {100 * growth['growth']:+.2f}% (target < {100 * TARGET_RSS_GROWTH:.0f}%)",
                growth["growth"] < TARGET_RSS_GROWTH,
            )
        )
    return lines


def report(result: dict[str, Any]) -> None:
    peak, soak = result["peak"], result["soak"]
    lat = soak["latency"]
    print(
        f"\naiosite serve --workers {result['settings']['workers']}, the example blog on "
        f"PostgreSQL with Redis sessions; load average {result['load_average']['start']} at "
        f"start, {result['load_average']['end']} at end"
    )
    print(
        f"peak: {peak['requests_per_s']:,.0f} req/s (closed loop, "
        f"{result['settings']['connections']} connections, p99 {peak['latency']['p99_ms']:.1f} ms)"
    )
    print(
        f"soak: {soak['rate']:g} req/s for {soak['seconds']:.0f} s: {soak['requests']:,} "
        f"requests, {soak['errors']} errors; latency p50 {lat['p50_ms']:.1f} ms, p99 "
        f"{lat['p99_ms']:.1f} ms, p99.9 {lat['p999_ms']:.1f} ms, max {lat['max_ms']:.1f} ms; "
        f"workers {soak['workers_cpu_percent'] or 0:.0f}% of a CPU (waited for one "
        f"{soak['workers_wait_percent'] or 0:.0f}%), driver {soak['driver_cpu_percent']:.0f}%"
    )
    print(
        f"\n{'minute':>6} {'requests':>9} {'errors':>6} {'p50 ms':>7} {'p99 ms':>8} "
        f"{'max ms':>8} {'RSS MiB':>8} {'CPU %':>6} {'wait %':>6} {'load':>5}"
    )
    for row in result["per_minute"]:
        print(
            f"{row['minute']:>6} {row['requests']:>9,} {row['errors']:>6} {row['p50_ms']:>7.1f} "
            f"{row['p99_ms']:>8.1f} {row['max_ms']:>8.1f} "
            f"{_num(row.get('workers_rss_kib'), 1 / 1024, 8)} "
            f"{_num(row.get('workers_cpu_percent'), 1, 6, 0)} "
            f"{_num(row.get('workers_wait_percent'), 1, 6, 0)} "
            f"{_num(row.get('load_average'), 1, 5, 2)}"
        )
    growth = result["rss_growth"]
    for pid, w in growth.get("per_worker", {}).items():
        print(
            f"worker {pid}: {w['from_kib'] / 1024:.1f} -> {w['to_kib'] / 1024:.1f} MiB "
            f"({100 * w['growth']:+.2f}%)"
        )
    log = result["server_log"]
    if log["other_lines"]:
        print("server log lines besides the access log:", log["other_lines"])
        for group, lines in log["samples"].items():
            if not group.startswith("INFO"):
                print(f"  {group}: {lines[0][:400]}")
    if soak["errors"]:
        print("errors:", soak["errors_by_kind"])
        for line in soak["error_samples"][:5]:
            print("  ", line)
    wait = soak["workers_wait_percent"]
    if wait is not None and wait > BUSY_WAIT_PERCENT:
        print(
            f"\nnote: the workers waited for a CPU {wait:.0f}% of the time (they ran "
            f"{soak['workers_cpu_percent'] or 0:.0f}%): other processes had the CPUs, so "
            "the server's capacity may have moved under the constant rate"
        )
    print()
    for line, ok in result["targets"]:
        print(("met     " if ok else "MISSED  ") + line)


def _num(value: float | None, scale: float, width: int, digits: int = 1) -> str:
    return f"{'-':>{width}}" if value is None else f"{value * scale:>{width}.{digits}f}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION, help="soak seconds")
    parser.add_argument("--rate", type=float, default=0, help="req/s (default: share x peak)")
    parser.add_argument("--share", type=float, default=0.8, help="of the measured peak")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before the peak")
    parser.add_argument("--peak-seconds", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=32, help="for the peak")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("SOAK_POSTGRES_URL", "postgresql://root@127.0.0.1:5432"),
    )
    parser.add_argument("--database", default="aiosite_soak")
    # The shared Redis: tests use databases 11-14 and bench/ws 15; the soak's keys go to 10.
    parser.add_argument(
        "--redis", default=os.environ.get("SOAK_REDIS_URL", "redis://127.0.0.1:6379/10")
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the server on CPU 1; the driver, Redis and PostgreSQL on CPU 0 (as bench/ws)",
    )
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--python", default=str(BENCH_PYTHON), help="the server's python")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def _terminate(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.pin and can_pin() and shutil.which("taskset") is None:
        sys.exit("missing taskset: `sudo apt-get install -y util-linux`")
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("AIOSITE_")}
    if not site.has_command(args.python, clean_env, "serve"):
        sys.exit(f"{args.python} has no `aiosite serve`: the soak measures the production server")
    signal.signal(signal.SIGTERM, _terminate)
    started_at = dt.datetime.now(dt.UTC)
    run_id = secrets.token_hex(4)
    services = site.Services(args.postgres, args.database, args.redis, f"aiosite-soak:{run_id}:")
    server_cpu = SERVER_CPU if args.pin and can_pin() else None
    load_start = [round(x, 2) for x in os.getloadavg()]
    with site.scratch_dir() as scratch_name:
        scratch = Path(scratch_name)
        env = site.environment(services, scratch, site.known_settings(args.python))
        print(f"preparing database {services.database} and the site ({run_id})", flush=True)
        steps = site.prepare(args.python, env, services)
        try:
            pinning = services_pinned(DRIVER_CPU) if server_cpu else contextlib.nullcontext()
            with pinning, site.serve(args.python, env, args.workers, server_cpu, scratch) as served:
                if server_cpu:
                    os.sched_setaffinity(0, {int(DRIVER_CPU)})
                command = served.command
                measured = _run(measure(served, services, run_id, args))
                server_log = served.log_digest()
            writes = asyncio.run(site.comments_found(services, measured.pop("acked_ids"), run_id))
            redis_keys = asyncio.run(site.redis_keys(services))
        finally:
            asyncio.run(site.delete_redis_keys(services))
            if not args.keep_database:
                asyncio.run(site.drop_database(services))
    load_end = [round(x, 2) for x in os.getloadavg()]
    result: dict[str, Any] = {
        "date": started_at.isoformat(timespec="seconds"),
        "command": " ".join(["python -m soak.run", *(argv if argv is not None else sys.argv[1:])]),
        "server_command": " ".join(command),
        "settings": {
            "workers": args.workers,
            "duration": args.duration,
            "share_of_peak": None if args.rate else args.share,
            "warmup_seconds": args.warmup,
            "peak_seconds": args.peak_seconds,
            "connections": args.connections,
            "mix": driver.MIX,
            "sample_every": SAMPLE_EVERY,
            "server_cpu": server_cpu,
            "driver_redis_postgresql_cpu": DRIVER_CPU if server_cpu else None,
            "env": "production",
            "session_backend": "redis",
            "channels_backend": "redis",
            "ratelimit": "disabled (ratelimit.enabled: false)",
            "prepared": steps,
        },
        "load_average": {"start": load_start, "end": load_end},
        "machine": {"cpus": os.cpu_count(), "processor": cpu_model()},
        "versions": versions(args.python, PACKAGES),
        "source": source_info(),
        **measured,
        "writes": writes,
        "redis_keys_of_run": redis_keys,
        "server_log": server_log,
    }
    result["targets"] = verdicts(result)
    report(result)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.duration == DEFAULT_DURATION else f"-{args.duration:g}s"
    stem = f"soak-{started_at.date().isoformat()}{suffix}"
    path = args.out / f"{stem}.json"
    # A second run the same day is kept beside the first: soak-DATE-2.json.
    again = 2
    while path.exists():
        path, again = args.out / f"{stem}-{again}.json", again + 1
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwritten to {path}")
    return 0 if all(ok for _, ok in result["targets"]) else 1


def _run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except StartError as exc:
        sys.exit(f"soak: {exc}")
    except KeyboardInterrupt:
        sys.exit("interrupted: server stopped, Redis and PostgreSQL back on their CPUs")
