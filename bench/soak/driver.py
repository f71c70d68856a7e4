"""The soak's load: the example blog's mixed read/write workload from an asyncio client.

Why a Python driver and not wrk: Debian's wrk is closed-loop only (wrk2, its constant-rate
fork, is not packaged), so a slow answer delays the next request and its latency is never
measured (coordinated omission), and its Lua hooks cannot easily keep what this soak must
keep: the id of every acknowledged comment (checked in the database afterwards) and
latency percentiles minute by minute. Here each request of the open loop is sent at its
intended time, reckoned from the start of the run, and its latency counts from that time,
so a stall of the server shows in full however many requests it held up. The driver is
cheap next to the server (a few hundred microseconds of CPU a request against
milliseconds for a rendered page); its own CPU use is recorded to show it was not the
limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import resource
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

# The mix: about 80% reads, 20% writes (a logged-in user's comment: CSRF token, a row).
MIX: dict[str, int] = {
    "home": 15,  # GET /
    "list": 20,  # GET /blog/
    "detail": 20,  # GET /blog/<slug>, anonymous
    "detail_user": 10,  # GET /blog/<slug>, logged in (the session read from Redis)
    "static": 10,  # GET a stylesheet, as the home page links it
    "healthz": 5,  # GET /healthz
    "comment": 20,  # POST /blog/<slug>/comments, logged in, CSRF token: 303
}
WRITES = frozenset({"comment"})
REQUEST_TIMEOUT = 30.0
# The client closes a connection idle this long, well before the server's keep-alive
# timeout, so that a request never races the server closing its connection (which would
# count as an error the server did not make).
CLIENT_KEEPALIVE = 1.0
MAX_CONNECTIONS = 256
ERROR_SAMPLES = 20
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_STYLESHEET = re.compile(r'<link[^>]+href="(/static/[^"]+\.css)"')
_COMMENT_ID = re.compile(r"#comment-(\d+)$")
_TAG = re.compile(r"<[^>]*>")


@dataclass
class Visitor:
    """One browser: its cookies (sent by hand: the production session cookie is Secure,
    which aiohttp's cookie jar keeps off plain http) and its CSRF token."""

    name: str
    cookies: dict[str, str] = field(default_factory=dict)
    token: str = ""

    def header(self) -> dict[str, str]:
        if not self.cookies:
            return {}
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}

    def keep(self, response: aiohttp.ClientResponse) -> None:
        for name, morsel in response.cookies.items():
            if morsel.value and morsel.get("max-age") != "0":
                self.cookies[name] = morsel.value
            else:
                self.cookies.pop(name, None)


@dataclass
class Site:
    base: str
    slugs: list[str]
    static_path: str
    writers: list[Visitor]
    run_id: str


@dataclass
class Stats:
    """What one phase saw: latencies (seconds) by minute, statuses, errors, acked ids."""

    started: float = 0.0
    latencies: dict[int, list[float]] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    minute_errors: Counter[int] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    acked_ids: list[int] = field(default_factory=list)
    writes_sent: int = 0
    late_starts: int = 0  # requests the driver itself sent >10 ms after their time

    def record(self, minute: int, kind: str, latency: float) -> None:
        self.latencies.setdefault(minute, []).append(latency)
        self.requests[kind] += 1

    def fail(self, minute: int, kind: str, why: str, detail: str) -> None:
        self.errors[f"{kind}: {why}"] += 1
        self.minute_errors[minute] += 1
        if len(self.error_samples) < ERROR_SAMPLES:
            self.error_samples.append(f"{kind}: {why}: {detail[:300]}")


def readable(payload: bytes) -> str:
    """An error page's text without its markup and its head, for the error samples."""
    text = payload.decode(errors="replace")
    text = text.split("<body", 1)[-1]
    return " ".join(_TAG.sub(" ", text).split())


def connector() -> aiohttp.TCPConnector:
    return aiohttp.TCPConnector(
        limit=MAX_CONNECTIONS, keepalive_timeout=CLIENT_KEEPALIVE, force_close=False
    )


def client_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=connector(),
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
        auto_decompress=False,
    )


# --- setting up: static path, logins ------------------------------------------------


async def stylesheet(http: aiohttp.ClientSession, base: str) -> str:
    """The home page's first stylesheet, as a browser would load it (a hashed name when
    the site serves from a collectstatic manifest)."""
    async with http.get(base + "/") as response:
        page = await response.text()
    found = _STYLESHEET.search(page)
    if found is None:
        raise RuntimeError("the home page links no stylesheet under /static/")
    return found.group(1)


async def log_in(
    http: aiohttp.ClientSession, base: str, username: str, password: str, slug: str
) -> Visitor:
    """Log in through the form, as a browser does; then the token of the logged-in
    session from a post's page (its comment form)."""
    visitor = Visitor(username)
    async with http.get(base + "/auth/login", headers=visitor.header()) as response:
        visitor.keep(response)
        token = _token(await response.text(), "/auth/login")
    form = {"username": username, "password": password, "csrf_token": token}
    async with http.post(
        base + "/auth/login", data=form, headers=visitor.header(), allow_redirects=False
    ) as response:
        visitor.keep(response)
        if response.status != 303:
            raise RuntimeError(f"logging in {username} answered {response.status}")
    async with http.get(f"{base}/blog/{slug}", headers=visitor.header()) as response:
        visitor.keep(response)
        visitor.token = _token(await response.text(), f"/blog/{slug}")
    return visitor


def _token(page: str, where: str) -> str:
    found = _CSRF.search(page)
    if found is None:
        raise RuntimeError(f"no csrf_token field on {where}")
    return found.group(1)


# --- one request --------------------------------------------------------------------


class Workload:
    def __init__(self, site: Site, seed: int = 1) -> None:
        self.site = site
        self.random = random.Random(seed)  # noqa: S311 (a load mix, not a secret)
        self.kinds = list(MIX)
        self.weights = list(MIX.values())
        self.sequence = 0

    async def one(
        self, http: aiohttp.ClientSession, stats: Stats, intended: float, kind: str | None = None
    ) -> None:
        """Send one request of the mix; its latency counts from ``intended``."""
        site, rnd = self.site, self.random
        kind = kind or rnd.choices(self.kinds, self.weights)[0]
        headers: dict[str, str] = {}
        data: dict[str, str] | None = None
        writer: Visitor | None = None
        if kind == "home":
            path = "/"
        elif kind == "list":
            path = "/blog/"
        elif kind in ("detail", "detail_user"):
            path = f"/blog/{rnd.choice(site.slugs)}"
            if kind == "detail_user":
                headers = rnd.choice(site.writers).header()
        elif kind == "static":
            path = site.static_path
        elif kind == "healthz":
            path = "/healthz"
        else:
            writer = rnd.choice(site.writers)
            self.sequence += 1
            stats.writes_sent += 1
            path = f"/blog/{rnd.choice(site.slugs)}/comments"
            headers = writer.header()
            body = f"soak {site.run_id} {self.sequence}: a comment from the soak's {writer.name}."
            data = {"body": body, "csrf_token": writer.token}
        minute = int((intended - stats.started) // 60)
        try:
            async with http.request(
                "POST" if data is not None else "GET",
                site.base + path,
                data=data,
                headers=headers,
                allow_redirects=False,
            ) as response:
                payload = await response.read()
                status = response.status
                location = response.headers.get("Location", "")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            stats.record(minute, kind, time.monotonic() - intended)
            stats.fail(minute, kind, type(exc).__name__, str(exc))
            return
        stats.record(minute, kind, time.monotonic() - intended)
        stats.statuses[status] += 1
        if status >= 400:
            stats.fail(minute, kind, str(status), readable(payload))
        elif writer is not None:
            found = _COMMENT_ID.search(location)
            if status != 303 or found is None:
                stats.fail(minute, kind, f"{status} without a comment's address", location)
            else:
                stats.acked_ids.append(int(found.group(1)))


# --- the two loops ------------------------------------------------------------------


async def closed_loop(
    workload: Workload, http: aiohttp.ClientSession, connections: int, seconds: float
) -> tuple[Stats, float]:
    """``connections`` clients, each sending its next request when the last is answered:
    the most the server answers. Returns the stats and the seconds it ran."""
    stats = Stats(started=time.monotonic())
    deadline = stats.started + seconds

    async def client() -> None:
        while time.monotonic() < deadline:
            await workload.one(http, stats, time.monotonic())

    await asyncio.gather(*(client() for _ in range(connections)))
    return stats, time.monotonic() - stats.started


async def open_loop(
    workload: Workload,
    http: aiohttp.ClientSession,
    rate: float,
    seconds: float,
    every: float = 10.0,
    tick: Callable[[float, Stats], Awaitable[None]] | None = None,
) -> Stats:
    """``rate`` requests a second at fixed intervals for ``seconds``, each sent at its
    time whether or not earlier ones were answered; ``tick(elapsed, stats)`` every
    ``every`` seconds (RSS samples, progress)."""
    stats = Stats(started=time.monotonic())
    total = int(rate * seconds)
    interval = 1.0 / rate
    pending: set[asyncio.Task[None]] = set()
    next_tick = 0.0
    sent = 0
    while sent < total:
        now = time.monotonic()
        # Every request whose time has come goes now (a late wake-up sends a few at once).
        while sent < total and stats.started + sent * interval <= now:
            intended = stats.started + sent * interval
            if now - intended > 0.010:
                stats.late_starts += 1
            task = asyncio.create_task(workload.one(http, stats, intended))
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent += 1
        if tick is not None and now - stats.started >= next_tick:
            next_tick += every
            await tick(now - stats.started, stats)
        wake = stats.started + sent * interval
        await asyncio.sleep(max(0.0, wake - time.monotonic()))
    if pending:
        await asyncio.wait(pending, timeout=REQUEST_TIMEOUT + 5)
    if tick is not None:
        await tick(time.monotonic() - stats.started, stats)
    return stats


def driver_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- figures ------------------------------------------------------------------------


def percentile(ordered: list[float], share: float) -> float:
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))
    return ordered[index]


def latency_figures(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": percentile(ordered, 0.50) * 1000,
        "p99_ms": percentile(ordered, 0.99) * 1000,
        "p999_ms": percentile(ordered, 0.999) * 1000,
        "max_ms": (ordered[-1] if ordered else float("nan")) * 1000,
    }


def summary(stats: Stats, seconds: float) -> dict[str, Any]:
    every = [v for values in stats.latencies.values() for v in values]
    total = sum(stats.requests.values())
    return {
        "requests": total,
        "seconds": seconds,
        "requests_per_s": total / seconds if seconds else None,
        "errors": sum(stats.errors.values()),
        "errors_by_kind": dict(stats.errors),
        "error_samples": stats.error_samples,
        "statuses": {str(k): v for k, v in sorted(stats.statuses.items())},
        "by_kind": dict(stats.requests),
        "writes_sent": stats.writes_sent,
        "writes_acknowledged": len(stats.acked_ids),
        "late_starts": stats.late_starts,
        "latency": latency_figures(every),
    }


def per_minute(stats: Stats) -> list[dict[str, Any]]:
    rows = []
    for minute in sorted(stats.latencies):
        values = stats.latencies[minute]
        rows.append(
            {
                "minute": minute + 1,
                "requests": len(values),
                "errors": stats.minute_errors[minute],
                **latency_figures(values),
            }
        )
    return rows


async def gently_close(http: aiohttp.ClientSession) -> None:
    with contextlib.suppress(Exception):
        await http.close()
