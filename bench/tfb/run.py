"""TechEmpower's six tests under load: every implementation, interleaved rounds of wrk.

    python -m tfb.run [--quick] [--rounds N] [--duration S] [--warmup S] [--connections 64]
                      [--tests TEST ...] [--servers NAME ...] [--no-startup]

Every server is started once, pinned to CPU 1 (``taskset -c 1``); wrk and all of
PostgreSQL's processes share CPU 0 (restored at the end). Each implementation must pass
the correctness checker first: a test it fails is not measured. Then, per test, a warm-up
per server and interleaved rounds (the order of servers rotates each round, so that a
drift of the machine favours none) of ``wrk -t1 -c64 --latency`` (queries and updates at
?queries=20). Besides req/s and p99 latency, each run records the server's CPU time per
request (/proc/PID/stat): on a shared machine req/s swings with the neighbours' load, CPU
per request much less. Results: bench/results/<date>.json and <date>.png (``-quick``
appended for --quick runs); startup times (tfb.startup) are measured at the end.

Needs wrk and taskset (``make -C bench wrk`` installs wrk).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import asyncpg

from tfb import servers, startup
from tfb.check import asyncpg_dsn, check_implementation

RESULTS = servers.BENCH / "results"
SERVER_CPU, SHARED_CPU = "1", "0"  # the server alone; wrk with PostgreSQL
WRK_TIMEOUT = "8s"  # as TechEmpower's runs: Django's sync worker queues connections
PACKAGES = (
    "aiosite",
    "aiohttp",
    "fastapi",
    "starlette",
    "uvicorn",
    "httptools",
    "django",
    "gunicorn",
    "sqlalchemy",
    "asyncpg",
    "psycopg",
    "uvloop",
    "orjson",
    "jinja2",
)


@dataclass
class WrkResult:
    requests_per_s: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int


@dataclass
class Run:
    server: str
    test: str
    round: int
    requests_per_s: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    cpu_us_per_request: float


@dataclass
class Summary:
    test: str
    server: str
    median_rps: float
    median_p99_ms: float
    median_cpu_us: float
    all_rps: list[float] = field(default_factory=list)
    errors: int = 0
    ratio_to_baseline: float | None = None


# --- wrk and /proc -----------------------------------------------------------------


def pinned(cpu: str, command: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *command] if can_pin() else command


def can_pin() -> bool:
    return (os.cpu_count() or 1) > 1


def wrk(url: str, seconds: float, connections: int) -> WrkResult:
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds:g}s",
        f"--timeout={WRK_TIMEOUT}",
        "--latency",
        url,
    ]
    done = subprocess.run(pinned(SHARED_CPU, command), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


def parse_wrk(out: str) -> WrkResult:
    """The numbers of one ``wrk --latency`` report."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
    total = re.search(r"(\d+) requests in", out)
    if rps is None or p99 is None or total is None:
        raise RuntimeError(f"could not read wrk's output:\n{out}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[p99.group(2)]
    non_2xx = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses:\s+(\d+)", out))
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    socket_errors = sum(int(n) for n in sockets.groups()) if sockets else 0
    return WrkResult(
        float(rps.group(1)),
        float(p99.group(1)) * scale,
        int(total.group(1)),
        non_2xx,
        socket_errors,
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int) -> dict[str, int]:
    """Peak (VmHWM) and current (VmRSS) resident memory, in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = dict(re.findall(r"^(VmHWM|VmRSS):\s+(\d+) kB", status, re.M))
    return {"peak_rss_kib": int(found.get("VmHWM", 0)), "rss_kib": int(found.get("VmRSS", 0))}


def memory_of(server: servers.Server) -> dict[str, int]:
    try:
        return memory_kib(server.measured_pid())
    except (OSError, servers.StartError):  # it died under load: the runs show errors
        return {"peak_rss_kib": 0, "rss_kib": 0}


# --- PostgreSQL on CPU 0 ---------------------------------------------------------


def postgres_pids() -> list[int]:
    """The postmaster(s) running here, each followed by its children."""
    names: dict[int, tuple[str, int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            comm = text[text.index("(") + 1 : text.rindex(")")]
            names[int(stat.parent.name)] = (comm, int(text.rsplit(")", 1)[1].split()[1]))
    roots = [
        pid
        for pid, (comm, ppid) in names.items()
        if comm == "postgres" and names.get(ppid, ("", 0))[0] != "postgres"
    ]
    return [p for root in roots for p in (root, *servers.descendants(root))]


def taskset_all_threads(cpus: str, pid: int) -> bool:
    done = subprocess.run(
        ["taskset", "-a", "-p", "-c", cpus, str(pid)], capture_output=True, text=True
    )
    return done.returncode == 0


@contextlib.contextmanager
def postgres_pinned(cpu: str) -> Iterator[None]:
    """PostgreSQL's processes on ``cpu`` (new backends inherit it); all CPUs again after."""
    pids = postgres_pids() if can_pin() else []
    if can_pin() and not pids:
        print("note: no local PostgreSQL process found; it is not pinned", file=sys.stderr)
    pinned_any = [pid for pid in pids if taskset_all_threads(cpu, pid)]
    if pids and not pinned_any:
        print("note: could not pin PostgreSQL (permissions?); it runs unpinned", file=sys.stderr)
    try:
        yield
    finally:
        if pinned_any:
            every = f"0-{(os.cpu_count() or 1) - 1}"
            for pid in postgres_pids():
                taskset_all_threads(every, pid)


# --- the benchmark ---------------------------------------------------------------


def check_tools() -> None:
    missing = [tool for tool in ("wrk", "taskset") if shutil.which(tool) is None]
    if missing:
        sys.exit(
            f"missing {' and '.join(missing)}: `make -C bench wrk`, or "
            "`sudo apt-get install -y wrk util-linux`"
        )


def check_all(
    started: dict[str, servers.Server | servers.StartError], dsn: str
) -> dict[str, list[str]]:
    """The tests each implementation passed; failures are printed."""
    passed: dict[str, list[str]] = {}
    for name, server in started.items():
        impl = servers.REGISTRY[name]
        if isinstance(server, servers.StartError):
            print(f"FAIL {name}: the server did not start: {server}")
            passed[name] = []
            continue
        failures = asyncio.run(check_implementation(server.base_url, impl.tests, dsn))
        failed = {f.test for f in failures}
        for failure in failures:
            print(f"FAIL {name} {failure}  (not benchmarked)")
        if not failures:
            print(f"PASS {name}: {', '.join(impl.tests)}")
        passed[name] = [t for t in impl.tests if t not in failed]
    return passed


def benchmark(
    pool: dict[str, servers.Server], passed: dict[str, list[str]], args: argparse.Namespace
) -> list[Run]:
    runs: list[Run] = []
    for test in args.tests:
        contenders = [s for name, s in pool.items() if test in passed[name]]
        if not contenders:
            continue
        for server in contenders:
            wrk(server.url(test), args.warmup, args.connections)
        for n in range(args.rounds):
            shift = n % len(contenders)
            for server in contenders[shift:] + contenders[:shift]:
                runs.append(one_run(server, test, n + 1, args))
    return runs


def one_run(server: servers.Server, test: str, round_: int, args: argparse.Namespace) -> Run:
    pid = server.measured_pid()
    cpu_before = cpu_seconds(pid)
    result = wrk(server.url(test), args.duration, args.connections)
    cpu_us = (cpu_seconds(pid) - cpu_before) / max(result.requests, 1) * 1e6
    run = Run(server.name, test, round_, cpu_us_per_request=cpu_us, **asdict(result))
    errors = result.non_2xx + result.socket_errors
    print(
        f"round {round_} {test:9} {server.name:13} {result.requests_per_s:10,.0f} req/s "
        f"p99 {result.p99_ms:7.2f} ms  cpu {cpu_us:6.1f} us/req"
        + (f"  {result.non_2xx} non-2xx, {result.socket_errors} socket errors" if errors else ""),
        flush=True,
    )
    return run


def summarise(runs: Sequence[Run]) -> list[Summary]:
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.test, run.server), []).append(run)
    summaries = {
        key: Summary(
            key[0],
            key[1],
            median_rps=statistics.median(r.requests_per_s for r in mine),
            median_p99_ms=statistics.median(r.p99_ms for r in mine),
            median_cpu_us=statistics.median(r.cpu_us_per_request for r in mine),
            all_rps=[r.requests_per_s for r in mine],
            errors=sum(r.non_2xx + r.socket_errors for r in mine),
        )
        for key, mine in groups.items()
    }
    for (test, _), summary in summaries.items():
        base = summaries.get((test, servers.BASELINE))
        if base and base.median_rps:
            summary.ratio_to_baseline = summary.median_rps / base.median_rps
    return list(summaries.values())


# --- output ----------------------------------------------------------------------


def speed_table(
    summaries: Sequence[Summary],
    tests: Sequence[str],
    names: Sequence[str],
    passed: dict[str, list[str]],
) -> str:
    by = {(s.test, s.server): s for s in summaries}

    def cell(test: str, name: str) -> str:
        if test not in servers.REGISTRY[name].tests:
            return "-"
        s = by.get((test, name))
        if s is None:
            return "failed check" if test not in passed.get(name, []) else "no runs"
        ratio = f" ({s.ratio_to_baseline:.2f}x)" if s.ratio_to_baseline is not None else ""
        flag = f" ({s.errors} errors!)" if s.errors else ""
        return f"{s.median_rps:,.0f}{ratio} p99 {s.median_p99_ms:.1f} ms{flag}"

    return _table(["test", *names], [[t, *(cell(t, n) for n in names)] for t in tests])


def cpu_table(summaries: Sequence[Summary], tests: Sequence[str], names: Sequence[str]) -> str:
    by = {(s.test, s.server): s for s in summaries}
    rows = [
        [t, *(f"{by[(t, n)].median_cpu_us:.0f} µs" if (t, n) in by else "-" for n in names)]
        for t in tests
    ]
    return _table(["test", *names], rows)


def memory_table(memory: dict[str, dict[str, int]]) -> str:
    rows = [
        [name, f"{m['peak_rss_kib'] / 1024:.1f} MiB", f"{m['rss_kib'] / 1024:.1f} MiB"]
        for name, m in memory.items()
    ]
    return _table(["server", "peak RSS (VmHWM)", "RSS at the end"], rows)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "| --- |" + " ---: |" * (len(header) - 1),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def chart(
    summaries: Sequence[Summary], tests: Sequence[str], names: Sequence[str], path: Path
) -> bool:
    """Grouped bars: median req/s relative to the baseline, per test and server."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed; no chart", file=sys.stderr)
        return False
    by = {(s.test, s.server): s.ratio_to_baseline for s in summaries}
    shown = [t for t in tests if any(by.get((t, n)) for n in names)]
    if not shown:
        return False
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(shown)), 5))
    for i, name in enumerate(names):
        xs = [x + (i - (len(names) - 1) / 2) * width for x in range(len(shown))]
        ys = [by.get((t, name)) or 0.0 for t in shown]
        bars = ax.bar(xs, ys, width, label=name)
        ax.bar_label(bars, [f"{y:.2f}" if y else "" for y in ys], fontsize=7, padding=2)
    ax.axhline(1.0, color="black", linewidth=1, linestyle="--")
    ax.set_xticks(range(len(shown)), shown)
    ax.set_ylabel(f"median req/s relative to {servers.BASELINE}")
    ax.set_title("TechEmpower tests, one worker process each")
    ax.legend(fontsize="small", ncols=len(names), loc="upper center", bbox_to_anchor=(0.5, -0.07))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def versions(python: str, packages: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    """Versions of ``packages`` in the servers' environment."""
    script = (
        "import json, sys\nfrom importlib import metadata\nout = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try: out[name] = metadata.version(name)\n"
        "    except metadata.PackageNotFoundError: out[name] = None\n"
        "out['python'] = sys.version.split()[0]\nprint(json.dumps(out))\n"
    )
    done = subprocess.run([python, "-c", script, *packages], capture_output=True, text=True)
    return json.loads(done.stdout) if done.returncode == 0 else {}


def machine_info(dsn: str) -> dict[str, Any]:
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
    return {
        "cpus": os.cpu_count(),
        "processor": cpu_model(),
        "platform": platform.platform(),
        "wrk": wrk_version.splitlines()[0] if wrk_version else None,
        "postgresql": asyncio.run(postgres_version(dsn)),
    }


async def postgres_version(dsn: str) -> str | None:
    try:
        conn = await asyncpg.connect(asyncpg_dsn(dsn))
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


# --- main ------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s, 1 s warm-up")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of warm-up per server")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--tests", nargs="+", default=[], help=" ".join(servers.TESTS))
    parser.add_argument("--servers", nargs="+", default=[], help=" ".join(servers.REGISTRY))
    parser.add_argument("--python", default=str(servers.BENCH_PYTHON), help="the servers' python")
    parser.add_argument("--no-startup", action="store_true", help="skip the startup timing")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 3, 1
    args.tests = [t for arg in args.tests for t in arg.split(",") if t] or list(servers.TESTS)
    unknown = set(args.tests) - set(servers.TESTS)
    if unknown:
        parser.error(f"unknown test(s) {sorted(unknown)}; known: {' '.join(servers.TESTS)}")
    return args


def _terminate(signum: int, frame: object) -> NoReturn:
    # SIGTERM unwinds like Ctrl-C: servers stopped, PostgreSQL unpinned.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    check_tools()
    impls = servers.resolve(args.servers)
    names = [impl.name for impl in impls]
    dsn = servers.database_url()
    signal.signal(signal.SIGTERM, _terminate)
    server_cpu = SERVER_CPU if can_pin() else None
    started_at = dt.datetime.now(dt.UTC)
    with (
        postgres_pinned(SHARED_CPU),
        servers.running(impls, python=args.python, cpu=server_cpu, dsn=dsn) as started,
    ):
        passed = check_all(started, dsn)
        pool = {n: s for n, s in started.items() if isinstance(s, servers.Server)}
        runs = benchmark(pool, passed, args)
        memory = {name: memory_of(server) for name, server in pool.items()}
    startup_times = None if args.no_startup else startup.measure(args.python)

    summaries = summarise(runs)
    print("\nmedian req/s (ratio to aiohttp-tuned) and p99 latency\n")
    print(speed_table(summaries, args.tests, names, passed))
    print("\nserver CPU time per request (median)\n")
    print(cpu_table(summaries, args.tests, names))
    print("\nmemory of each server process\n")
    print(memory_table(memory))
    if startup_times:
        print("\nstartup: process start to first answered request\n")
        print(startup.table(startup_times))

    args.out.mkdir(parents=True, exist_ok=True)
    stem = started_at.date().isoformat() + ("-quick" if args.quick else "")
    result = {
        "date": started_at.isoformat(timespec="seconds"),
        "command": " ".join(["python -m tfb.run", *(argv if argv is not None else sys.argv[1:])]),
        "settings": {
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "queries": 20,
            "server_cpu": server_cpu,
            "wrk_and_postgresql_cpu": SHARED_CPU if server_cpu else None,
            "baseline": servers.BASELINE,
        },
        "machine": machine_info(dsn),
        "versions": versions(args.python),
        "servers": names,
        "tests": args.tests,
        "passed_checks": passed,
        "summary": [asdict(s) for s in summaries],
        "memory": memory,
        "startup": startup_times,
        "runs": [asdict(r) for r in runs],
    }
    path = args.out / f"{stem}.json"
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwritten to {path}")
    if chart(summaries, args.tests, names, args.out / f"{stem}.png"):
        print(f"chart in {args.out / f'{stem}.png'}")
    failed = any(set(servers.REGISTRY[n].tests) - set(passed.get(n, [])) for n in names)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit("interrupted: servers stopped, PostgreSQL back on all CPUs")
