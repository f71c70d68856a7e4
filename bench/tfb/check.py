"""Correctness checker: TechEmpower's rules for the six tests, over HTTP and in PostgreSQL.

    python -m tfb.check [--python bench/.venv/bin/python] [NAME ...]

starts each implementation (all by default), checks it and prints one line per
(implementation, test); exits 1 on any failure. ``check_implementation`` is the same
check against a server already running. It needs only aiohttp and asyncpg, so it runs in
either virtualenv. The expected fortunes come from the database, and the added one is
spelt out here rather than imported, so that a typo in shared code cannot pass unnoticed.

A server cannot pass by remembering the database:

- Between requests the checker changes the database itself: every world row gets a new
  randomNumber (one committed UPDATE) before each /db and /queries request, and a fortune
  with a fresh message, full of characters to escape, is inserted for the /fortunes request.
  Each answer must show the database as it is at that moment.
- Statements are counted in PostgreSQL's own statistics, as TechEmpower's verifier does
  (it reads pg_stat_statements, which this server does not load; we read the per-table
  counters of pg_stat_user_tables). For each of db, queries, updates and fortunes, a few
  counted requests run against a fresh copy of the table without any index (same name, new
  OID, swapped in one transaction between requests): a statement reading it makes one
  sequential scan, so its ``seq_scan`` counts statements, and one ``WHERE id = ANY(...)``
  counts once for all its rows. ``n_tup_upd`` counts rows updated, and a statement trigger
  on the /updates copy counts UPDATE statements, which are told apart from the SELECTs.
  Each rule is a lower bound: at least one read per request (/db, /fortunes), per distinct
  row returned (/queries: an ORM's identity map may answer a repeated id), per row
  returned and then updated (/updates). The originals are back in place for the other
  checks; the copies stay until their counts are read.
- PostgreSQL 15 keeps each backend's counts pending until the end of a transaction at least
  a second after its last flush, then at the latest 10 s after it went idle
  (PGSTAT_IDLE_INTERVAL), and flushes at once when the backend exits. Counts only grow, so
  one that reaches its bound passes at once; otherwise the checker stops the server
  (``release``) and reads the counts once the backends that served the counted requests
  have exited, or, for a server it must leave running, makes it use the database again a
  second later (which flushes) and waits at most 11 s after the counted requests.
- Every fortune's message is compared as written in the HTML, references unconverted,
  with the database's message escaped in one of the ways TechEmpower's verifier accepts.

Another client using the same tables during the counted requests would be counted too:
checkers of one database take turns (an advisory lock), and a load run must not overlap a
check. The database is restored afterwards, also on failure: the original tables in place,
world's values as found, no fortune of the checker's; what a killed check leaves behind is
repaired by the next one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import html
import json
import re
import secrets
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from email.message import Message
from html.parser import HTMLParser
from typing import Any

import aiohttp
import asyncpg

from tfb import servers

ADDED_FORTUNE = "Additional fortune added at request time."
JAPANESE_FORTUNE = "フレームワークのベンチマーク"
# (raw ?queries= value or None for no parameter, the count TechEmpower expects)
QUERY_CASES: tuple[tuple[str | None, int], ...] = (
    ("20", 20),
    (None, 1),
    ("", 1),
    ("foo", 1),
    ("0", 1),
    ("-3", 1),
    ("501", 500),
)
BODY_EXCERPT = 200
WORLD_ROWS = 10_000

# The counted requests of each test, in this order: (path, objects expected). Two requests
# of 500 rows share ~25 ids, so a cache that fills as it reads is counted too.
COUNTED: dict[str, tuple[tuple[str, int], ...]] = {
    "db": (("/db", 1),) * 5,
    "queries": (("/queries?queries=500", 500),) * 2 + (("/queries?queries=20", 20),),
    "updates": (("/updates?queries=20", 20),) * 2 + (("/updates?queries=5", 5),),
    "fortunes": (("/fortunes", 1),) * 3,
}
TABLE_OF = {"db": "world", "queries": "world", "updates": "world", "fortunes": "fortune"}
# An idle backend flushes its statistics within PGSTAT_IDLE_INTERVAL (10 s); 1 s to spare.
STATS_FLUSH_BOUND = 11.0
STATS_POLL = 0.1
PGSTAT_MIN_INTERVAL = 1.1  # a backend flushes at transaction end once a second at most
NUDGES = 16  # concurrent requests, to reach each of a pool's connections
LOCK_TIMEOUT = "5s"  # for the checker's table swaps
OTHER_CHECKER_TIMEOUT = "120s"  # for another checker of the same database to finish
CHECKER_LOCK = 0x7466_6263  # pg_advisory_lock key: checkers of one database take turns
SAVED = "tfb_check_{table}"  # the original table while a copy stands in for it
LEFTOVERS = r"tfb\_check\_%"
UPDATE_COUNTER = "tfb_check_update_statements"
CHECKER_FORTUNE = "Checker's fortune"


@dataclass(frozen=True)
class Failure:
    test: str
    reason: str

    def __str__(self) -> str:
        return f"{self.test}: {self.reason}"


class CheckFailed(Exception):
    """One rule broken; the message says which and with what."""


@dataclass(frozen=True)
class Response:
    path: str
    status: int
    content_type: str
    body: bytes

    def text(self) -> str:
        try:
            return self.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CheckFailed(f"GET {self.path}: body is not valid UTF-8 ({exc})") from None

    def json(self) -> Any:
        try:
            return json.loads(self.text())
        except ValueError as exc:
            raise CheckFailed(
                f"GET {self.path}: body is not JSON ({exc}): {self.excerpt()}"
            ) from None

    def excerpt(self) -> str:
        return repr(self.body[:BODY_EXCERPT].decode("utf-8", "replace"))


Release = Callable[[], Awaitable[object]]


# --- the database, under the checker's control -------------------------------------------


def retired(table: str, test: str) -> str:
    """The name of a counted copy, kept until its counts are read."""
    return f"tfb_check_{table}_{test}"


def shifted(number: int, shift: int) -> int:
    """``number`` moved by ``shift`` within 1..10000 (the same formula as SHIFT_WORLDS)."""
    return (number - 1 + shift) % WORLD_ROWS + 1


def new_shift() -> int:
    """A shift that changes every randomNumber (1..9999)."""
    return 1 + secrets.randbelow(WORLD_ROWS - 1)


SHIFT_WORLDS = "UPDATE world SET randomnumber = (randomnumber - 1 + $1) % 10000 + 1"
RESTORE_WORLDS = """
UPDATE world SET randomnumber = v.r FROM unnest($1::int[], $2::int[]) AS v(id, r)
WHERE world.id = v.id AND world.randomnumber <> v.r
"""
COPY_WORLDS = """
INSERT INTO world (id, randomnumber)
SELECT id, (randomnumber - 1 + $1) % 10000 + 1 FROM tfb_check_world
"""
COPY_FORTUNES = "INSERT INTO fortune (id, message) SELECT id, message FROM tfb_check_fortune"
COUNT_UPDATES = f"""
CREATE SEQUENCE {UPDATE_COUNTER};
CREATE FUNCTION {UPDATE_COUNTER}() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN PERFORM nextval('{UPDATE_COUNTER}'); RETURN NULL; END $$;
CREATE TRIGGER {UPDATE_COUNTER} AFTER UPDATE ON world
FOR EACH STATEMENT EXECUTE FUNCTION {UPDATE_COUNTER}();
"""
DROP_UPDATE_COUNTER = f"""
DROP FUNCTION IF EXISTS {UPDATE_COUNTER}() CASCADE;
DROP SEQUENCE IF EXISTS {UPDATE_COUNTER};
"""
UPDATE_STATEMENTS = (
    "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM tfb_check_update_statements"
)
BACKENDS = """
SELECT coalesce(array_agg(pid), '{}') FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
AND backend_type = 'client backend'
"""


@dataclass(frozen=True)
class Counts:
    """PostgreSQL's counters for the counted copies, as flushed so far."""

    scans: dict[int, int]  # table OID -> sequential scans: statements that read it
    updated: dict[int, int]  # table OID -> rows updated
    update_statements: int


class Lab:
    """The checker's hold on the database: what it holds, its changes, and their undoing."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.original: dict[int, int] | None = None  # world as found
        self.values: dict[int, int] | None = None  # world as it is now, if known
        self.past: list[dict[int, int]] = []  # what world (or a copy) held earlier
        self.fortunes: list[tuple[int, str]] = []
        self.worlds_changed = False
        self.copies: dict[str, str] = {}  # table -> the test whose copy stands in for it
        self.counting_updates = False

    @classmethod
    @contextlib.asynccontextmanager
    async def hold(cls, conn: asyncpg.Connection) -> AsyncIterator[Lab]:
        lab = cls(conn)
        await conn.execute("SET stats_fetch_consistency = none")
        await conn.execute(f"SET lock_timeout = '{OTHER_CHECKER_TIMEOUT}'")
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", CHECKER_LOCK)
        except asyncpg.LockNotAvailableError:
            raise CheckFailed(
                f"another checker has held this database for {OTHER_CHECKER_TIMEOUT}"
            ) from None
        try:
            await conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
            await lab.repair()
            yield lab
        finally:
            try:
                await lab.restore()
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", CHECKER_LOCK)

    async def exists(self, table: str) -> bool:
        return bool(await self.conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table))

    async def repair(self) -> None:
        """Undo what an interrupted check left: a copy in place of a table, copies, rows."""
        for table in ("world", "fortune"):
            saved = SAVED.format(table=table)
            if await self.exists(saved):
                async with self.conn.transaction():
                    await self.conn.execute(f"DROP TABLE IF EXISTS {table}")
                    await self.conn.execute(f"ALTER TABLE {saved} RENAME TO {table}")
        await self.drop_copies()
        if await self.exists("fortune"):
            await self.conn.execute(
                "DELETE FROM fortune WHERE message LIKE $1", CHECKER_FORTUNE + "%"
            )

    async def drop_copies(self) -> None:
        """Drop the counted copies (never an original kept aside) and the UPDATE counter."""
        leftovers = await self.conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename LIKE $1 AND tablename <> ALL($2::text[])",
            LEFTOVERS,
            [SAVED.format(table=table) for table in ("world", "fortune")],
        )
        for row in leftovers:
            await self.conn.execute(f'DROP TABLE IF EXISTS "{row["tablename"]}"')
        await self.conn.execute(DROP_UPDATE_COUNTER)
        self.counting_updates = False

    async def snapshot(self) -> None:
        """What the database holds before the checks (the state restored at the end)."""
        for table in ("world", "fortune"):
            if not await self.exists(table):
                raise CheckFailed(f"no {table} table: run `make -C bench database`")
        if await self.conn.fetchval("SHOW track_counts") != "on":
            raise CheckFailed("PostgreSQL's track_counts is off: it counts no statements")
        self.original = dict(await self.conn.fetch("SELECT id, randomnumber FROM world"))
        self.values = dict(self.original)
        rows = await self.conn.fetch("SELECT id, message FROM fortune")
        self.fortunes = [(row["id"], row["message"]) for row in rows]

    async def restore(self) -> None:
        await self.put_back()
        if await self.exists("fortune"):
            await self.conn.execute(
                "DELETE FROM fortune WHERE message LIKE $1", CHECKER_FORTUNE + "%"
            )
        if self.worlds_changed and self.original is not None:
            ids, numbers = zip(*sorted(self.original.items()), strict=True)
            await self.conn.execute(RESTORE_WORLDS, list(ids), list(numbers))
            # The checker's changes leave ten dead versions of each row behind.
            await self.conn.execute("VACUUM (ANALYZE) world")
            self.worlds_changed = False
        await self.drop_copies()

    # --- world as the checker knows it ----------------------------------------------------

    async def world_values(self) -> dict[int, int]:
        if self.values is None:
            self.values = dict(await self.conn.fetch("SELECT id, randomnumber FROM world"))
        return self.values

    def held_before(self, world_id: int, number: int) -> bool:
        """Whether the row had this value earlier in the check, before the checker's change."""
        return any(values.get(world_id) == number for values in self.past)

    async def change_worlds(self) -> None:
        """Give every world row a new randomNumber, in one committed UPDATE."""
        values = await self.world_values()
        shift = new_shift()
        self.worlds_changed = True
        self.values = None  # unknown should the UPDATE fail half-way
        await self.conn.execute(SHIFT_WORLDS, shift)
        self.past.append(values)
        self.values = {i: shifted(n, shift) for i, n in values.items()}

    def forget_worlds(self) -> None:
        """The server changed world (/updates): read it again when needed."""
        self.worlds_changed = True
        self.values = None

    def new_fortune(self) -> tuple[int, str]:
        """A fortune the server cannot have seen, with every character that needs escaping."""
        ident = max((i for i, _ in self.fortunes), default=0) + 1 + secrets.randbelow(1000)
        token = secrets.token_hex(4)
        return ident, f"{CHECKER_FORTUNE} {token}: <b>1 < 2 & 3 > 2</b> &amp; \"x\" 'y' — ü"

    @contextlib.asynccontextmanager
    async def extra_fortune(self) -> AsyncIterator[tuple[int, str]]:
        fortune = self.new_fortune()
        await self.conn.execute("INSERT INTO fortune (id, message) VALUES ($1, $2)", *fortune)
        try:
            yield fortune
        finally:
            await self.conn.execute("DELETE FROM fortune WHERE id = $1", fortune[0])

    # --- counted copies ------------------------------------------------------------------

    async def stand_in(self, test: str, fill: Callable[[], Awaitable[object]]) -> int:
        """Replace ``test``'s table by a fresh copy without index, filled by ``fill``; its OID.

        One transaction: a server sees the original or the copy, never no table. The
        original is kept aside (SAVED); an earlier copy is retired (renamed, not dropped),
        so that counts still pending in the server's backends reach it.
        """
        table = TABLE_OF[test]
        saved = SAVED.format(table=table)
        current = self.copies.get(table)
        async with self.swapping(table):
            if current is None:
                await self.conn.execute(f"ALTER TABLE {table} RENAME TO {saved}")
            else:
                await self.conn.execute(f"ALTER TABLE {table} RENAME TO {retired(table, current)}")
            await self.conn.execute(
                f"CREATE TABLE {table} (LIKE {saved} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
            )
            await fill()
            if test == "updates":
                await self.conn.execute(COUNT_UPDATES)
            await self.conn.execute(f"ANALYZE {table}")  # sane plans for batched UPDATEs
            oid: int = await self.conn.fetchval("SELECT $1::regclass::oid", table)
        self.copies[table] = test
        self.counting_updates = self.counting_updates or test == "updates"
        return oid

    @contextlib.asynccontextmanager
    async def swapping(self, table: str) -> AsyncIterator[None]:
        """One transaction; a lock the server's connections keep is named, not waited for."""
        try:
            async with self.conn.transaction():
                yield
        except asyncpg.LockNotAvailableError:
            raise CheckFailed(
                f"the checker could not lock the {table} table within {LOCK_TIMEOUT} to swap "
                "it: a connection keeps a transaction open on it"
            ) from None

    async def world_copy(self, test: str) -> int:
        """A copy of world, every randomNumber changed (what was read before is stale)."""
        values = await self.world_values()
        shift = new_shift()
        oid = await self.stand_in(test, functools.partial(self.conn.execute, COPY_WORLDS, shift))
        self.past.append({i: shifted(n, shift) for i, n in values.items()})
        return oid

    async def fortune_copy(self, test: str) -> int:
        return await self.stand_in(test, functools.partial(self.conn.execute, COPY_FORTUNES))

    async def put_back(self) -> None:
        """The original tables in place again (their copies retired)."""
        for table, test in list(self.copies.items()):
            async with self.swapping(table):
                await self.conn.execute(f"ALTER TABLE {table} RENAME TO {retired(table, test)}")
                await self.conn.execute(
                    f"ALTER TABLE {SAVED.format(table=table)} RENAME TO {table}"
                )
            del self.copies[table]

    async def counts(self, oids: Sequence[int]) -> Counts:
        await self.conn.execute("SELECT pg_stat_clear_snapshot()")
        rows = await self.conn.fetch(
            "SELECT oid, pg_stat_get_numscans(oid) AS scans, "
            "pg_stat_get_tuples_updated(oid) AS updated FROM unnest($1::oid[]) AS oid",
            list(oids),
        )
        statements = 0
        if self.counting_updates:
            statements = await self.conn.fetchval(UPDATE_STATEMENTS)
        return Counts(
            scans={row["oid"]: row["scans"] for row in rows},
            updated={row["oid"]: row["updated"] for row in rows},
            update_statements=statements,
        )

    async def backends(self) -> list[int]:
        """The other client backends connected to this database now."""
        return list(await self.conn.fetchval(BACKENDS))

    async def alive(self, pids: Sequence[int]) -> bool:
        return bool(
            await self.conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", list(pids)
            )
        )


# --- the counted requests ----------------------------------------------------------------


def requests_label(paths: Sequence[str]) -> str:
    return ", ".join(f"{n} x GET {path}" for path, n in Counter(paths).items())


@dataclass
class Window:
    """The counted requests of one test, on its own copy of the table."""

    test: str
    oid: int = 0
    paths: list[str] = field(default_factory=list)
    rows: int = 0  # distinct rows per answer, summed: the least number of reads
    complete: bool = False

    def problems(self, counts: Counts) -> list[str]:
        scans = counts.scans.get(self.oid, 0)
        table = TABLE_OF[self.test]
        label = requests_label(self.paths)
        source = f"PostgreSQL's pg_stat_user_tables.seq_scan of an index-less copy of {table}"
        if self.test == "updates":
            return self.update_problems(counts, scans, label)
        if scans >= self.rows:
            return []
        if self.test == "queries":
            return [
                f"{scans} statements read world ({source}) for {self.rows} distinct rows "
                f"returned by {label}: each row must be read by its own SELECT, not served "
                "from memory nor batched in one WHERE id = ANY(...)"
            ]
        return [
            f"{scans} statements read {table} ({source}) during {label}: each request must "
            "read the database with its own SELECT, not serve what it read before"
        ]

    def update_problems(self, counts: Counts, scans: int, label: str) -> list[str]:
        statements = counts.update_statements
        reads = scans - statements
        updated = counts.updated.get(self.oid, 0)
        problems = []
        if reads < self.rows:
            problems.append(
                f"{reads} SELECTs read world for {self.rows} rows returned by {label} "
                f"({scans} statements read the table, {statements} of them UPDATEs, in "
                "PostgreSQL's statistics): each row must be read by its own SELECT before "
                "it is updated"
            )
        if updated < self.rows:
            problems.append(
                f"{updated} rows updated (PostgreSQL's n_tup_upd) for {self.rows} rows "
                f"returned by {label}: every returned row must be updated"
            )
        if statements < len(self.paths):
            problems.append(f"{statements} UPDATE statements ran during {label}")
        return problems


# --- the checks --------------------------------------------------------------------------


class Checker:
    """The checks of one implementation: one method per test, each raising CheckFailed."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, lab: Lab) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.lab = lab
        self.conn = lab.conn

    async def get(self, path: str) -> Response:
        async with self.session.get(self.base_url + path) as resp:
            body = await resp.read()
            response = Response(path, resp.status, resp.headers.get("Content-Type", ""), body)
            if not 200 <= resp.status < 300:
                raise CheckFailed(f"GET {path}: HTTP {resp.status}: {response.excerpt()}")
            for header in ("Server", "Date"):
                if not resp.headers.get(header):
                    raise CheckFailed(f"GET {path}: no {header} header")
            return response

    async def run(self, tests: Sequence[str], release: Release | None) -> list[Failure]:
        problems: dict[str, list[str]] = {test: [] for test in tests}

        async def attempt(test: str, check: Awaitable[None]) -> None:
            try:
                await check
            except CheckFailed as exc:
                problems[test].append(str(exc))
            except (aiohttp.ClientError, TimeoutError) as exc:
                problems[test].append(f"request failed: {exc!r}")

        windows = [Window(test) for test in COUNTED if test in tests]
        if any(test in TABLE_OF for test in tests):
            await self.lab.snapshot()
        try:
            for window in windows:
                await attempt(window.test, self.count(window))
            ended = time.monotonic()
            backends = await self.lab.backends()
        finally:
            await self.lab.put_back()
        for test in tests:
            await attempt(test, getattr(self, test)())
        complete = [window for window in windows if window.complete]
        if complete:
            counts = await self.settle(complete, release, backends, ended)
            for window in complete:
                problems[window.test] += window.problems(counts)
        return [
            Failure(test, "; ".join(dict.fromkeys(reasons)))
            for test, reasons in problems.items()
            if reasons
        ]

    async def count(self, window: Window) -> None:
        """The counted requests of ``window.test``, on a fresh copy of its table."""
        test = window.test
        if test == "fortunes":
            window.oid = await self.lab.fortune_copy(test)
        else:
            window.oid = await self.lab.world_copy(test)
        # The answers' contents are the other checks' business: here they are counted.
        for path, count in COUNTED[test]:
            window.paths.append(path)
            if test == "fortunes":
                expect_html_utf8(await self.get(path))
                window.rows += 1
            else:
                worlds = await (self.one_world(path) if test == "db" else self.worlds(path, count))
                window.rows += len({world_id for world_id, _ in worlds})
        window.complete = True

    async def settle(
        self, windows: Sequence[Window], release: Release | None, pids: list[int], ended: float
    ) -> Counts:
        """The counts once enough is flushed to judge (see the module's docstring)."""
        oids = [window.oid for window in windows]
        counts = await self.lab.counts(oids)
        if all(not window.problems(counts) for window in windows):
            return counts
        if release is not None:
            await release()
        else:
            await self.nudge(
                next((w.test for w in windows if w.test != "updates"), "updates"), ended
            )
        while True:
            gone = not await self.lab.alive(pids)  # before reading: exits flush everything
            counts = await self.lab.counts(oids)
            if gone or time.monotonic() >= ended + STATS_FLUSH_BOUND:
                return counts
            if all(not window.problems(counts) for window in windows):
                return counts
            await asyncio.sleep(STATS_POLL)

    async def nudge(self, test: str, ended: float) -> None:
        """Have the server's backends end a transaction over a second after the counted ones.

        A backend flushes its pending counts (the copies' with the rest) at the end of a
        transaction a second after its last flush. These requests read the original tables,
        which are not counted; concurrent, they reach every pooled connection. Only a
        server that uses the database answers them so: the others wait for the idle flush.
        """
        await asyncio.sleep(max(0.0, ended + PGSTAT_MIN_INTERVAL - time.monotonic()))
        if test == "updates":
            self.lab.forget_worlds()
        path = COUNTED[test][-1][0]
        await asyncio.gather(*(self.get(path) for _ in range(NUDGES)), return_exceptions=True)

    # --- the six tests -----------------------------------------------------------

    async def plaintext(self) -> None:
        resp = await self.get("/plaintext")
        expect_media_type(resp, "text/plain")
        if resp.body != b"Hello, World!":
            raise CheckFailed(f"GET /plaintext: body {resp.excerpt()}, not 'Hello, World!'")

    async def json(self) -> None:
        resp = await self.get("/json")
        expect_media_type(resp, "application/json")
        data = resp.json()
        if data != {"message": "Hello, World!"}:
            raise CheckFailed(f'GET /json: {data!r}, not {{"message": "Hello, World!"}}')

    async def db(self) -> None:
        ids = set()
        for _ in range(10):
            await self.lab.change_worlds()
            worlds = await self.one_world("/db")
            await self.expect_values("GET /db", worlds)
            ids.add(worlds[0][0])
        if len(ids) == 1:
            raise CheckFailed(f"GET /db: 10 requests all gave id {ids.pop()}: not random")

    async def queries(self) -> None:
        for raw, count in QUERY_CASES:
            path = "/queries" + ("" if raw is None else f"?queries={raw}")
            await self.lab.change_worlds()
            await self.expect_values(f"GET {path}", await self.worlds(path, count))

    async def fortunes(self) -> None:
        async with self.lab.extra_fortune() as extra:
            resp = await self.get("/fortunes")
        check_fortunes(resp, [*self.lab.fortunes, extra], extra)

    async def updates(self) -> None:
        changed = total = 0
        try:
            for raw, count in QUERY_CASES:
                path = "/updates" + ("" if raw is None else f"?queries={raw}")
                before = dict(await self.conn.fetch("SELECT id, randomnumber FROM world"))
                worlds = await self.worlds(path, count)
                await self.expect_persisted(f"GET {path}", worlds)
                changed += sum(before[i] != n for i, n in worlds)
                total += len(worlds)
        finally:
            self.lab.forget_worlds()
        # A new random number equals the old one once in 10,000: most rows must change.
        if changed < total / 2:
            raise CheckFailed(
                f"GET /updates: only {changed} of {total} returned rows differ from the "
                "database's values before the request: randomNumber is not being changed"
            )

    # --- shared parts ------------------------------------------------------------

    async def one_world(self, path: str) -> list[tuple[int, int]]:
        resp = await self.get(path)
        expect_media_type(resp, "application/json")
        data = resp.json()
        if not isinstance(data, dict):
            raise CheckFailed(f"GET {path}: a JSON {type(data).__name__}, not an object")
        return [parse_world(data, f"GET {path}")]

    async def worlds(self, path: str, count: int) -> list[tuple[int, int]]:
        resp = await self.get(path)
        expect_media_type(resp, "application/json")
        data = resp.json()
        if not isinstance(data, list):
            raise CheckFailed(f"GET {path}: a JSON {type(data).__name__}, not a list")
        if len(data) != count:
            raise CheckFailed(f"GET {path}: {len(data)} objects, expected {count}")
        worlds = [parse_world(item, f"GET {path}: item {n}") for n, item in enumerate(data)]
        if count >= 20 and len({i for i, _ in worlds}) == 1:
            raise CheckFailed(f"GET {path}: all {count} objects have id {worlds[0][0]}")
        return worlds

    async def expect_values(self, what: str, worlds: Sequence[tuple[int, int]]) -> None:
        """Each (id, randomNumber) is the database's row as the checker has just set it."""
        values = await self.lab.world_values()
        for world_id, number in worlds:
            held = values.get(world_id)
            if number != held:
                stale = (
                    " (a value the row held earlier in this check, before the checker changed "
                    "every row: served from memory, not read from the database)"
                    if self.lab.held_before(world_id, number)
                    else ""
                )
                raise CheckFailed(
                    f"{what}: id {world_id} has randomNumber {number}, "
                    f"the database holds {held}{stale}"
                )

    async def stored(self, ids: Sequence[int]) -> dict[int, int]:
        rows = await self.conn.fetch(
            "SELECT id, randomnumber FROM world WHERE id = ANY($1::int[])", list(set(ids))
        )
        return dict(rows)

    async def expect_persisted(self, what: str, worlds: Sequence[tuple[int, int]]) -> None:
        """The database holds what was returned (any of the values of a repeated id)."""
        returned: dict[int, set[int]] = {}
        for world_id, number in worlds:
            returned.setdefault(world_id, set()).add(number)
        stored = await self.stored(list(returned))
        for world_id, numbers in returned.items():
            if stored.get(world_id) not in numbers:
                shown = ", ".join(map(str, sorted(numbers)))
                raise CheckFailed(
                    f"{what}: returned id {world_id} with randomNumber {shown}, but the "
                    f"database holds {stored.get(world_id)}: update not persisted"
                )


def expect_media_type(resp: Response, media_type: str) -> None:
    got = parse_content_type(resp.content_type)[0]
    if got != media_type:
        raise CheckFailed(
            f"GET {resp.path}: Content-Type {resp.content_type!r}, expected {media_type}"
        )


def expect_html_utf8(resp: Response) -> None:
    media_type, charset = parse_content_type(resp.content_type)
    if media_type != "text/html" or charset != "utf-8":
        raise CheckFailed(
            f"GET {resp.path}: Content-Type {resp.content_type!r}, "
            "expected 'text/html; charset=utf-8'"
        )


def parse_content_type(value: str) -> tuple[str, str | None]:
    message = Message()
    message["Content-Type"] = value
    charset = message.get_param("charset")
    return (
        message.get_content_type() if value else "",
        str(charset).lower() if isinstance(charset, str) else None,
    )


def parse_world(item: object, what: str) -> tuple[int, int]:
    """(id, randomNumber) of one world object, after checking its keys, types and ranges."""
    if not isinstance(item, dict):
        raise CheckFailed(f"{what}: {item!r} is not an object")
    if set(item) != {"id", "randomNumber"}:
        raise CheckFailed(f"{what}: keys {sorted(item)}, expected ['id', 'randomNumber']")
    for key in ("id", "randomNumber"):
        value = item[key]
        if type(value) is not int:
            raise CheckFailed(f"{what}: {key} is {value!r}, not an integer")
        if not 1 <= value <= 10_000:
            raise CheckFailed(f"{what}: {key} {value} is outside 1..10000")
    return item["id"], item["randomNumber"]


# --- fortunes --------------------------------------------------------------------


def by_message(row: tuple[int, str]) -> str:
    return row[1]


def check_fortunes(
    resp: Response, stored: Sequence[tuple[int, str]], inserted: tuple[int, str]
) -> None:
    """The page lists ``stored`` (``inserted`` among them) and the added fortune, as required."""
    expect_html_utf8(resp)
    text = resp.text()
    if "<script>" in text:
        raise CheckFailed("GET /fortunes: literal <script> in the body: messages not escaped")
    if JAPANESE_FORTUNE not in text:
        raise CheckFailed(
            f"GET /fortunes: the Japanese fortune {JAPANESE_FORTUNE!r} is not in the body "
            "(missing or wrongly encoded)"
        )
    expected = sorted([*stored, (0, ADDED_FORTUNE)], key=by_message)
    page = FortunesPage.parse(text)
    compare_fortunes(page.rows, expected, inserted)
    compare_tokens(page.tokens, FortunesPage.parse(fortunes_document(expected)).tokens)


def fortunes_document(rows: Sequence[tuple[int, str]]) -> str:
    """TechEmpower's fortunes template, filled in."""
    body = "".join(f"<tr><td>{i}</td><td>{html.escape(m)}</td></tr>" for i, m in rows)
    return (
        "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
        f"<tr><th>id</th><th>message</th></tr>{body}</table></body></html>"
    )


class FortunesPage(HTMLParser):
    """The page as a token list (whitespace between tags ignored) and its table rows.

    A row is the text of its two cells exactly as written in the page, character
    references unconverted: escaping is judged on what the server wrote.
    """

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.text = text
        self.line_starts = [0, *(m.end() for m in re.finditer("\n", text))]
        self.tokens: list[str] = []
        self.rows: list[tuple[str, str]] = []
        self._cells: list[str] | None = None
        self._cell_start: int | None = None

    @classmethod
    def parse(cls, text: str) -> FortunesPage:
        page = cls(text)
        page.feed(text)
        page.close()
        return page

    def position(self) -> int:
        """Where the tag being handled starts in the text."""
        line, column = self.getpos()
        return self.line_starts[line - 1] + column

    def handle_decl(self, decl: str) -> None:
        self.tokens.append(f"<!{decl.lower()}>")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tokens.append(f"<{tag}>")
        if tag == "tr":
            self._cells = []
        elif tag == "td" and self._cells is not None:
            self._cell_start = self.position() + len(self.get_starttag_text() or "")

    def handle_endtag(self, tag: str) -> None:
        self.tokens.append(f"</{tag}>")
        if tag == "td" and self._cells is not None and self._cell_start is not None:
            self._cells.append(self.text[self._cell_start : self.position()].strip())
            self._cell_start = None
        elif tag == "tr" and self._cells is not None:
            if self._cells:
                self.rows.append((self._cells[0], self._cells[1] if len(self._cells) > 1 else ""))
            self._cells = None

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.tokens.append(data.strip())


# How TechEmpower's verifier (toolset/test_types/fortune/fortune_html_parser.py) lets each
# character be written: it turns these references into one normal form and compares the
# page with the escaped messages; every other character must appear as itself.
ACCEPTED: dict[str, tuple[str, ...]] = {
    "<": ("&lt;", "&#60;", "&#060;", "&#x3c;"),
    "&": ("&amp;",),
    ">": (">", "&gt;", "&#62;", "&#062;", "&#x3e;"),
    '"': ('"', "&quot;", "&#34;", "&#034;", "&#x22;"),
    "'": ("'", "&apos;", "&#39;", "&#039;", "&#x27;"),
    "+": ("+", "&#43;", "&#043;", "&#x2b;"),
    "/": ("/", "&#47;", "&#047;", "&#x2f;"),
    "(": ("(", "&#40;", "&#040;", "&#x28;"),
    ")": (")", "&#41;", "&#041;", "&#x29;"),
    "—": ("—", "&mdash;"),
}


def written_as(char: str, raw: str, pos: int) -> str | None:
    """The accepted form of ``char`` that ``raw`` has at ``pos``, if any."""
    for form in ACCEPTED.get(char, (char,)):
        found = raw[pos : pos + len(form)]
        # Numeric references are compared as the verifier does: case-insensitively.
        if found == form or (form.startswith("&#") and found.lower() == form):
            return form
    return None


def escaping_problem(message: str, raw: str) -> str | None:
    """What is wrong with ``raw`` as the HTML text of ``message``, or None."""
    pos = 0
    for char in message:
        form = written_as(char, raw, pos)
        if form is None:
            return describe_escaping(message, raw, char, pos)
        pos += len(form)
    return None if pos == len(raw) else describe_escaping(message, raw, None, pos)


REFERENCE = re.compile(r"&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);")


def describe_escaping(message: str, raw: str, char: str | None, pos: int) -> str:
    """Why ``raw`` is not ``message`` escaped (html.unescape serves the wording only)."""
    if char in ("<", "&") and raw.startswith(char, pos) and not REFERENCE.match(raw, pos):
        return f"{char!r} is not escaped in {raw!r}"
    once = html.unescape(raw)
    if once != message and html.unescape(once) == message:
        return f"escaped twice: {raw!r}"
    if once != message or char is None:
        return f"{raw!r} reads {once!r}, not the database's {message!r}"
    accepted = ", ".join(map(repr, ACCEPTED.get(char, (char,))))
    return f"{char!r} is written {raw[pos : pos + 10]!r}..., not one of {accepted}, in {raw!r}"


def compare_fortunes(
    got: Sequence[tuple[str, str]],
    expected: Sequence[tuple[int, str]],
    inserted: tuple[int, str],
) -> None:
    """The rows, with the most telling reason first when they differ.

    The verdict compares what the page says; converting its references (html.unescape)
    only serves to name the missing or misplaced row.
    """
    what = "GET /fortunes"
    want_ids = [str(i) for i, _ in expected]
    if [ident for ident, _ in got] == want_ids:
        for n, ((_, raw), (ident, message)) in enumerate(zip(got, expected, strict=True)):
            problem = escaping_problem(message, raw)
            if problem is not None:
                raise CheckFailed(f"{what}: row {n + 1} (id {ident}): {problem}")
        return
    rows = [(ident, html.unescape(message)) for ident, message in got]
    want = [(str(i), m) for i, m in expected]
    if ("0", ADDED_FORTUNE) not in rows:
        raise CheckFailed(
            f"{what}: the fortune added at request time (0, {ADDED_FORTUNE!r}) is missing"
        )
    if str(inserted[0]) not in {ident for ident, _ in rows}:
        raise CheckFailed(
            f"{what}: the fortune the checker inserted just before the request "
            f"({inserted[0]}, {inserted[1]!r}) is missing: fortunes must be read from the "
            "database on every request"
        )
    missing = Counter(want) - Counter(rows)
    extra = Counter(rows) - Counter(want)
    if missing or extra:
        raise CheckFailed(
            f"{what}: {len(rows)} rows, expected {len(want)}; "
            f"missing {sorted(missing.elements())[:3]}, unexpected {sorted(extra.elements())[:3]}"
        )
    at = next(n for n, (a, b) in enumerate(zip(rows, want, strict=True)) if a != b)
    raise CheckFailed(
        f"{what}: rows not sorted by message: row {at + 1} is {rows[at]!r}, expected {want[at]!r}"
    )


def compare_tokens(got: Sequence[str], expected: Sequence[str]) -> None:
    for n, (a, b) in enumerate(zip(got, expected, strict=False)):
        if a != b:
            context = " ".join(got[max(0, n - 3) : n])
            raise CheckFailed(
                f"GET /fortunes: the document differs from TechEmpower's template after "
                f"{context!r}: {a!r} where {b!r} belongs"
            )
    if len(got) != len(expected):
        tail = got[len(expected) :] if len(got) > len(expected) else expected[len(got) :]
        side = "unexpected" if len(got) > len(expected) else "missing"
        raise CheckFailed(f"GET /fortunes: the document ends wrongly: {side} {tail[:5]!r}")


# --- running the checks ----------------------------------------------------------


def asyncpg_dsn(dsn: str) -> str:
    """asyncpg wants postgresql://; SQLAlchemy's postgresql+asyncpg:// is accepted too."""
    scheme, sep, rest = dsn.partition("://")
    return f"{scheme.split('+')[0]}{sep}{rest}"


async def check_implementation(
    base_url: str, tests: Sequence[str], dsn: str, *, release: Release | None = None
) -> list[Failure]:
    """Check the implementation at ``base_url`` (its prefix included) on ``tests``.

    ``release``, if given, stops the server (or closes its database connections); it is
    awaited after the last request, and only when the statement counts flushed so far do
    not already pass: the server's backends then flush theirs as they exit, instead of
    within PostgreSQL's 10 s idle interval.
    """
    conn = await asyncpg.connect(asyncpg_dsn(dsn))
    try:
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session, Lab.hold(conn) as lab:
            return await Checker(session, base_url, lab).run(tests, release)
    except CheckFailed as exc:
        return [Failure(test, str(exc)) for test in tests]
    finally:
        await conn.close()


def report(name: str, tests: Sequence[str], failures: Sequence[Failure]) -> None:
    by_test = {f.test: f for f in failures}
    for test in tests:
        failure = by_test.get(test)
        print(f"FAIL {name} {test}: {failure.reason}" if failure else f"PASS {name} {test}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=str(servers.BENCH_PYTHON))
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(servers.REGISTRY))
    args = parser.parse_args(argv)
    dsn = servers.database_url()
    ok = True
    for impl in servers.resolve(args.names):
        try:
            server = servers.start(impl, python=args.python, dsn=dsn)
        except servers.StartError as exc:
            print(f"FAIL {impl.name} (all tests): the server did not start: {exc}")
            ok = False
            continue
        release = functools.partial(asyncio.to_thread, servers.stop, server)
        try:
            failures = asyncio.run(
                check_implementation(server.base_url, impl.tests, dsn, release=release)
            )
        finally:
            servers.stop(server)
        report(impl.name, impl.tests, failures)
        ok = ok and not failures
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
