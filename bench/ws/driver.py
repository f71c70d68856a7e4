"""The load driver, a process of its own (uvloop): subscribers, a publisher, the clock.

    python -m ws.driver load --subscribe WS_URL... --stats URL... --publish WS_URL
                             [--subscribers 1000] [--warmup 100] [--messages 1000]
                             [--window 64] [--rate 20] [--rate-messages 200]
                             [--size 128] [--pids PID...]
    python -m ws.driver idle --subscribe WS_URL... --stats URL... [--subscribers 1000]

``load`` opens the subscribers (spread over the --subscribe URLs in turn), waits until
the servers' /stats count them all, connects the publisher and runs three phases, each
message carrying its sequence number and its send time (CLOCK_MONOTONIC, which is one
clock for every process on Linux):

1. a warm-up of --warmup messages;
2. throughput: --messages as fast as the servers deliver them, with at most --window
   messages published and not yet delivered to every subscriber (a closed loop: the
   in-process hub queues up to ``channels.queue_size`` messages per subscriber, and a
   publisher that ran further ahead would only measure dropped messages). Deliveries per
   second over the time from the first publish to the last delivery; the servers' CPU
   time per delivery (/proc/PID/stat); latency under that load;
3. latency: --rate-messages at a fixed --rate (messages per second), well under what
   either server can deliver: p50/p99 from publish to delivery.

Every subscriber must receive every message once and in order; what did not is counted
(missing, duplicated, out of order). The result is one JSON object on stdout.

``idle`` opens the subscribers, waits until the servers count them, prints ``ready`` and
holds them until its stdin closes (the harness measures the servers' memory meanwhile).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import sys
import time
from array import array
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop

from ws.client import OnMessage, Subscriber, subscribe

CONNECT_CONCURRENCY = 50
STALL_TIMEOUT = 10.0


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(needed, soft)), hard))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_wait_seconds(pid: int | str) -> float:
    """Time the process's main thread was ready to run but waited for a CPU: what other
    processes on its CPU took from it (/proc/PID/schedstat)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


def percentile(values: Sequence[int], q: float) -> float:
    """The q-quantile (nearest rank) of nanoseconds, in milliseconds."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))
    return ordered[rank] / 1e6


def _fields(payload: bytes) -> tuple[int, int]:
    data = orjson.loads(payload)
    if "seq" not in data:  # an envelope: {"channel": ..., "data": {...}, ...}
        data = data["data"]
    return data["seq"], data["t"]


class Tracker:
    """Every delivery: per message how many subscribers have it, per phase the latencies."""

    def __init__(self, subscribers: int, phases: dict[str, tuple[int, int]]) -> None:
        self.subscribers = subscribers
        self.phases = phases
        total = max(end for _, end in phases.values())
        self.counts = array("i", bytes(4 * total))
        # Messages 0..done-1 have reached every subscriber; 0..published-1 were sent.
        self.done = 0
        self.published = 0
        self.progress = asyncio.Event()
        self.latencies = {name: array("q") for name in phases}
        self.last_delivery = dict.fromkeys(phases, 0)
        # Messages a subscriber received after a later one.
        self.out_of_order = 0
        self._bounds = sorted((start, end, name) for name, (start, end) in phases.items())

    def phase_of(self, seq: int) -> str:
        for start, end, name in self._bounds:
            if start <= seq < end:
                return name
        raise ValueError(f"message {seq} belongs to no phase")

    def receiver(self) -> Receiver:
        return Receiver(self)

    def delivered(self, seq: int, sent: int, now: int) -> None:
        counts = self.counts
        counts[seq] += 1
        phase = self.phase_of(seq)
        self.latencies[phase].append(now - sent)
        if now > self.last_delivery[phase]:
            self.last_delivery[phase] = now
        if counts[seq] == self.subscribers and seq == self.done:
            done, total = seq + 1, len(counts)
            while done < total and counts[done] >= self.subscribers:
                done += 1
            self.done = done
            self.progress.set()

    def errors(self) -> dict[str, int]:
        """Deliveries that did not happen, that happened twice, that came late."""
        n, sent = self.subscribers, self.counts[: self.published]
        return {
            "missing": sum(n - c for c in sent if c < n),
            "duplicated": sum(c - n for c in self.counts if c > n),
            "out_of_order": self.out_of_order,
        }

    async def wait_done(self, upto: int, patience: float = STALL_TIMEOUT) -> None:
        """Until messages 0..upto-1 have reached every subscriber; TimeoutError when no
        message completes for ``patience`` seconds."""
        while self.done < upto:
            self.progress.clear()
            async with asyncio.timeout(patience):
                await self.progress.wait()


class Receiver:
    """One subscriber's view: the next sequence number it expects."""

    __slots__ = ("expected", "tracker")

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.expected = 0

    def __call__(self, payload: bytes, now: int) -> None:
        seq, sent = _fields(payload)
        if seq < self.expected:
            self.tracker.out_of_order += 1
        else:
            self.expected = seq + 1
        self.tracker.delivered(seq, sent, now)


async def open_subscribers(
    urls: Sequence[str], count: int, make: Callable[[], OnMessage]
) -> list[Subscriber]:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(i: int) -> Subscriber:
        async with gate:
            return await subscribe(urls[i % len(urls)], make())

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def wait_subscribed(
    http: aiohttp.ClientSession, stats: Sequence[str], count: int, patience: float = 60.0
) -> None:
    """Until the servers count ``count`` subscribers between them."""
    async with asyncio.timeout(patience):
        while True:
            seen = 0
            for url in stats:
                async with http.get(url) as response:
                    seen += (await response.json())["subscribers"]
            if seen == count:
                return
            await asyncio.sleep(0.05)


def message(seq: int, body: str) -> str:
    return f'{{"seq":{seq},"t":{time.monotonic_ns()},"body":"{body}"}}'


async def publish_windowed(
    ws: aiohttp.ClientWebSocketResponse,
    tracker: Tracker,
    start: int,
    end: int,
    window: int,
    body: str,
) -> int:
    """Publish start..end-1 with at most ``window`` in flight; the first send's time."""
    first = time.monotonic_ns()
    for seq in range(start, end):
        if seq - tracker.done >= window:
            await tracker.wait_done(seq - window + 1)
        await ws.send_str(message(seq, body))
        tracker.published = seq + 1
    await tracker.wait_done(end)
    return first


async def publish_at_rate(
    ws: aiohttp.ClientWebSocketResponse,
    tracker: Tracker,
    start: int,
    end: int,
    rate: float,
    body: str,
) -> None:
    began = time.monotonic()
    for n, seq in enumerate(range(start, end)):
        delay = began + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await ws.send_str(message(seq, body))
        tracker.published = seq + 1
    await tracker.wait_done(end)


def server_cpu(pids: Sequence[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def server_wait(pids: Sequence[int]) -> float:
    return sum(cpu_wait_seconds(pid) for pid in pids)


async def load(args: argparse.Namespace) -> dict[str, Any]:
    warmup = (0, args.warmup)
    throughput = (warmup[1], warmup[1] + args.messages)
    latency = (throughput[1], throughput[1] + args.rate_messages)
    tracker = Tracker(
        args.subscribers, {"warmup": warmup, "throughput": throughput, "latency": latency}
    )
    # ~``--size`` bytes of JSON per message, as a small chat message.
    body = "x" * max(0, args.size - len(message(10**6, "")))
    async with aiohttp.ClientSession() as http:
        subscribers = await open_subscribers(args.subscribe, args.subscribers, tracker.receiver)
        phase = "subscribe"
        try:
            await wait_subscribed(http, args.stats, args.subscribers)
            log(f"{args.subscribers} subscribers connected and subscribed")
            async with http.ws_connect(args.publish, max_msg_size=0) as ws:
                phase = "warmup"
                await publish_windowed(ws, tracker, *warmup, args.window, body)
                phase = "throughput"
                cpu0, driver0 = server_cpu(args.pids), time.process_time()
                wait0 = server_wait(args.pids), cpu_wait_seconds("self")
                first = await publish_windowed(ws, tracker, *throughput, args.window, body)
                last = tracker.last_delivery["throughput"]
                cpu1, driver1 = server_cpu(args.pids), time.process_time()
                wait1 = server_wait(args.pids), cpu_wait_seconds("self")
                phase = "latency"
                await publish_at_rate(ws, tracker, *latency, args.rate, body)
                cpu2 = server_cpu(args.pids)
        except TimeoutError:
            # What did arrive says what went wrong.
            if phase == "subscribe":
                stalled = f"the servers did not count {args.subscribers} subscribers in time"
            else:
                stalled = (
                    f"no message reached every subscriber for {STALL_TIMEOUT:g} s in the "
                    f"{phase} phase ({tracker.done} of {latency[1]} delivered to all)"
                )
            return {"error": stalled, "errors": tracker.errors()}
        finally:
            for subscriber in subscribers:
                subscriber.close()
    seconds = (last - first) / 1e9
    deliveries = args.messages * args.subscribers
    latency_deliveries = args.rate_messages * args.subscribers
    return {
        "subscribers": args.subscribers,
        "payload_bytes": len(message(throughput[0], body)),
        "throughput": {
            "messages": args.messages,
            "window": args.window,
            "deliveries": deliveries,
            "seconds": seconds,
            "deliveries_per_s": deliveries / seconds,
            "messages_per_s": args.messages / seconds,
            "p50_ms": percentile(tracker.latencies["throughput"], 0.50),
            "p99_ms": percentile(tracker.latencies["throughput"], 0.99),
            "server_cpu_us_per_delivery": (cpu1 - cpu0) / deliveries * 1e6,
            "server_cpu_percent": (cpu1 - cpu0) / seconds * 100,
            "server_cpu_wait_percent": (wait1[0] - wait0[0]) / seconds * 100,
            "driver_cpu_percent": (driver1 - driver0) / seconds * 100,
            "driver_cpu_wait_percent": (wait1[1] - wait0[1]) / seconds * 100,
        },
        "latency": {
            "rate": args.rate,
            "messages": args.rate_messages,
            "deliveries": latency_deliveries,
            "p50_ms": percentile(tracker.latencies["latency"], 0.50),
            "p99_ms": percentile(tracker.latencies["latency"], 0.99),
            "max_ms": max(tracker.latencies["latency"], default=0) / 1e6,
            "server_cpu_us_per_delivery": (cpu2 - cpu1) / latency_deliveries * 1e6,
        },
        "errors": tracker.errors(),
    }


async def idle(args: argparse.Namespace) -> dict[str, Any]:
    received = 0

    def on_message(payload: bytes, now: int) -> None:
        nonlocal received
        received += 1

    async with aiohttp.ClientSession() as http:
        subscribers = await open_subscribers(args.subscribe, args.subscribers, lambda: on_message)
        try:
            await wait_subscribed(http, args.stats, args.subscribers)
            print("ready", flush=True)
            # Held until the harness closes our stdin.
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        finally:
            for subscriber in subscribers:
                subscriber.close()
    return {"subscribers": args.subscribers, "received": received}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("load", "idle"))
    parser.add_argument("--subscribe", nargs="+", required=True, help="ws:// URLs")
    parser.add_argument("--stats", nargs="+", required=True, help="the servers' /stats")
    parser.add_argument("--publish", help="ws:// URL of the publishing websocket")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--rate", type=float, default=20.0, help="messages/s, phase 3")
    parser.add_argument("--rate-messages", type=int, default=200)
    parser.add_argument("--size", type=int, default=128, help="bytes of JSON per message")
    parser.add_argument("--pids", type=int, nargs="*", default=[], help="servers to measure")
    args = parser.parse_args(argv)
    if args.mode == "load" and not args.publish:
        parser.error("load needs --publish")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    raise_fd_limit(args.subscribers + 256)
    result = uvloop.run(load(args) if args.mode == "load" else idle(args))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
