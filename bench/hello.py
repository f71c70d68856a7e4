"""Hello-world benchmark: aiosite against a hand-written aiohttp app, side by side.

Both servers run at once, each in its own process pinned to CPU 1 (``taskset -c 1``) on
the same event loop (uvloop by default, ``--loop asyncio`` for both on asyncio); ``wrk``
runs pinned to CPU 0. After a warm-up, rounds alternate between the servers so that any
drift of the machine hits both alike. The aiosite side is a real project
(bench/hello_site, env production, debug off) served by ``aiosite run --no-reload``.

    python bench/hello.py                  # 5 rounds x 10 s per server and endpoint
    python bench/hello.py --quick          # 3 rounds x 5 s
    python bench/hello.py --loop asyncio   # both servers on asyncio's loop

Needs ``wrk`` and ``taskset`` (Debian/Ubuntu: ``apt-get install -y wrk util-linux``).
Results go to bench/results/hello-<date>.json (hello-<date>-asyncio.json with asyncio).
Not a test: pytest only collects tests/.

Besides req/s, each run records the server process's CPU time per request (from
/proc/PID/stat): on a shared or noisy machine req/s swings with the neighbours' load,
while CPU per request stays put, so its ratio is the steadier measure of the layer's cost.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SITE = HERE / "hello_site"
ENDPOINTS = {"json": "/json", "plaintext": "/plaintext"}
SERVER_CPU, WRK_CPU = "1", "0"


# --- the hand-written aiohttp side -------------------------------------------------


def serve_aiohttp(port: int, loop_name: str) -> None:
    """The baseline: plain aiohttp, one route per endpoint, nothing else."""
    import asyncio

    from aiohttp import web

    async def hello_json(request: web.Request) -> web.Response:
        return web.json_response({"message": "Hello, World!"})

    async def hello_plaintext(request: web.Request) -> web.Response:
        return web.Response(text="Hello, World!")

    app = web.Application()
    app.router.add_get("/json", hello_json)
    app.router.add_get("/plaintext", hello_plaintext)
    if loop_name == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    web.run_app(app, host="127.0.0.1", port=port, loop=loop, print=None)


# --- running the benchmark ---------------------------------------------------------


@dataclass
class Server:
    name: str
    command: list[str]
    env: dict[str, str]
    port: int
    proc: subprocess.Popen[bytes] | None = None

    def url(self, endpoint: str) -> str:
        return f"http://127.0.0.1:{self.port}{ENDPOINTS[endpoint]}"


@dataclass
class Run:
    server: str
    endpoint: str
    round: int
    requests_per_s: float
    p99_ms: float
    errors: int
    cpu_us_per_request: float


@dataclass
class Summary:
    endpoint: str
    server: str
    median_rps: float
    all_rps: list[float] = field(default_factory=list)
    median_p99_ms: float = 0.0
    median_cpu_us: float = 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pinned(cpu: str, command: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *command] if (os.cpu_count() or 1) > 1 else command


def servers(loop_name: str) -> list[Server]:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("AIOSITE_")}
    aiosite = Server(
        "aiosite",
        [
            sys.executable,
            "-m",
            "aiosite",
            "--project",
            str(SITE),
            "run",
            "--no-reload",
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "--loop",
            loop_name,
        ],
        {**base_env, "AIOSITE_ENV": "production"},
        free_port(),
    )
    aiohttp = Server(
        "aiohttp",
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve-aiohttp",
            "{port}",
            "--loop",
            loop_name,
        ],
        base_env,
        free_port(),
    )
    return [aiosite, aiohttp]


def start(server: Server) -> None:
    command = [part.replace("{port}", str(server.port)) for part in server.command]
    server.proc = subprocess.Popen(
        pinned(SERVER_CPU, command), env=server.env, stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            sys.exit(f"{server.name} server exited with {server.proc.returncode}")
        try:
            with urllib.request.urlopen(server.url("json"), timeout=2) as resp:  # noqa: S310
                body = json.loads(resp.read())
        except OSError:
            time.sleep(0.1)
            continue
        if body != {"message": "Hello, World!"}:
            sys.exit(f"{server.name} answered {body!r}")
        return
    sys.exit(f"{server.name} server did not start within 30 s")


def stop(server: Server) -> None:
    if server.proc is not None and server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, seconds: int, connections: int) -> tuple[float, float, int, int]:
    """requests/s, p99 latency in ms, error count and request count of one wrk run."""
    command = pinned(WRK_CPU, ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url])
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    if rps is None or p99 is None:
        sys.exit(f"could not read wrk's output:\n{out}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses:\s+(\d+)", out))
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    total = re.search(r"(\d+) requests in", out)
    count = int(total.group(1)) if total else 0
    return float(rps.group(1)), float(p99.group(1)) * scale, errors, count


def summarise(runs: list[Run]) -> list[Summary]:
    summaries = []
    for endpoint in ENDPOINTS:
        for name in ("aiosite", "aiohttp"):
            mine = [r for r in runs if r.server == name and r.endpoint == endpoint]
            summaries.append(
                Summary(
                    endpoint,
                    name,
                    median_rps=statistics.median(r.requests_per_s for r in mine),
                    all_rps=[r.requests_per_s for r in mine],
                    median_p99_ms=statistics.median(r.p99_ms for r in mine),
                    median_cpu_us=statistics.median(r.cpu_us_per_request for r in mine),
                )
            )
    return summaries


def table(summaries: list[Summary]) -> str:
    rows = [
        "| endpoint | server | req/s (median) | p99 latency | server CPU per request "
        "| aiosite/aiohttp req/s | aiosite/aiohttp by CPU |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    by = {(s.endpoint, s.server): s for s in summaries}
    for endpoint in ENDPOINTS:
        base = by[(endpoint, "aiohttp")]
        for name in ("aiosite", "aiohttp"):
            s = by[(endpoint, name)]
            ratio = " | "
            if name == "aiosite":
                ratio = (
                    f"{s.median_rps / base.median_rps:.3f} | "
                    f"{base.median_cpu_us / s.median_cpu_us:.3f}"
                )
            rows.append(
                f"| {endpoint} | {name} | {s.median_rps:,.0f} | {s.median_p99_ms:.2f} ms | "
                f"{s.median_cpu_us:.1f} µs | {ratio} |"
            )
    return "\n".join(rows)


def ratios(summaries: list[Summary]) -> dict[str, dict[str, float]]:
    """aiosite relative to aiohttp: 0.95 means the layer costs 5%."""
    by = {(s.endpoint, s.server): s for s in summaries}
    return {
        e: {
            "req_per_s": by[(e, "aiosite")].median_rps / by[(e, "aiohttp")].median_rps,
            "by_cpu": by[(e, "aiohttp")].median_cpu_us / by[(e, "aiosite")].median_cpu_us,
        }
        for e in ENDPOINTS
    }


def check_tools() -> None:
    missing = [tool for tool in ("wrk", "taskset") if shutil.which(tool) is None]
    if missing:
        sys.exit(
            f"missing {', '.join(missing)}: install with "
            "`sudo apt-get install -y wrk util-linux` (or your system's packages)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per server")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="3 rounds x 5 s, 2 s warm-up")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--serve-aiohttp", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_aiohttp:
        serve_aiohttp(args.serve_aiohttp, args.loop)
        return
    if args.quick:
        args.rounds, args.duration, args.warmup = 3, 5, 2
    check_tools()

    pair = servers(args.loop)
    runs: list[Run] = []
    try:
        for server in pair:
            start(server)
        for server in pair:
            for endpoint in ENDPOINTS:
                wrk(server.url(endpoint), args.warmup, args.connections)
        for n in range(args.rounds):
            # Alternate who goes first, so a trend in the machine favours neither.
            order = pair if n % 2 == 0 else pair[::-1]
            for endpoint in ENDPOINTS:
                for server in order:
                    assert server.proc is not None
                    cpu_before = cpu_seconds(server.proc.pid)
                    rps, p99, errors, total = wrk(
                        server.url(endpoint), args.duration, args.connections
                    )
                    cpu_us = (cpu_seconds(server.proc.pid) - cpu_before) / max(total, 1) * 1e6
                    if errors:
                        sys.exit(f"{server.name} {endpoint}: {errors} errors in round {n + 1}")
                    runs.append(Run(server.name, endpoint, n + 1, rps, p99, errors, cpu_us))
                    print(
                        f"round {n + 1} {endpoint:9} {server.name:7} {rps:10,.0f} req/s "
                        f"p99 {p99:6.2f} ms  cpu {cpu_us:5.1f} us/req",
                        flush=True,
                    )
    finally:
        for server in pair:
            stop(server)

    summaries = summarise(runs)
    print()
    print(table(summaries))
    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "loop": args.loop,
        "rounds": args.rounds,
        "duration_s": args.duration,
        "connections": args.connections,
        "python": platform.python_version(),
        "aiohttp": _version("aiohttp"),
        "aiosite": _version("aiosite"),
        "machine": {
            "cpus": os.cpu_count(),
            "processor": _cpu_model(),
            "platform": platform.platform(),
        },
        "summary": [asdict(s) for s in summaries],
        "ratios": ratios(summaries),
        "runs": [asdict(r) for r in runs],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.loop == "uvloop" else f"-{args.loop}"
    path = args.out / f"hello-{dt.date.today().isoformat()}{suffix}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {path}")


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
