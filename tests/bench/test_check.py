"""The TechEmpower checker (bench/tfb/check.py) catches real mistakes, and passes the real thing.

A small aiohttp implementation of the six tests is served in-process, correct or with
deliberate mistakes; the checker must name each mistake, with a real PostgreSQL counting
the statements. The last tests start aiosite's own implementation (bench/tfb/aiosite_site)
with this virtualenv's python.
"""

from __future__ import annotations

import asyncio
import html
import re
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from tfb import rules, servers
from tfb.check import ADDED_FORTUNE, STATS_FLUSH_BOUND, check_implementation, escaping_problem
from tfb.run import parse_wrk


@dataclass
class Cache:
    """What a cheating server keeps in memory instead of asking the database."""

    worlds: dict[int, int]
    fortunes: list[tuple[int, str]]


POOL = web.AppKey("pool", asyncpg.Pool)
CACHE = web.AppKey("cache", Cache)
HELLO = "Hello, World!"
WORLD_BY_ID = "SELECT randomnumber FROM world WHERE id = $1"
WORLDS_BY_IDS = "SELECT id, randomnumber FROM world WHERE id = ANY($1::int[])"


def clamp(raw: str | None, mistakes: set[str]) -> int:
    if "unclamped-queries" in mistakes:
        return int(raw) if raw and raw.isdigit() and int(raw) > 0 else 1
    try:
        count = int(raw) if raw else 1
    except ValueError:
        return 1
    return min(max(count, 1), 500)


def escape(message: str, mistakes: set[str]) -> str:
    if "unescaped" in mistakes:
        return message
    if "double-escaped" in mistakes:
        return html.escape(html.escape(message))
    if "ampersand-unescaped" in mistakes:
        return html.escape(message).replace("&amp;", "&")
    if "numeric-references" in mistakes:  # accepted: what the verifier normalises
        return (
            message.replace("&", "&amp;")
            .replace("<", "&#60;")
            .replace(">", "&#X3E;")
            .replace('"', "&#34;")
            .replace("'", "&#x27;")
        )
    if "minimal-escaping" in mistakes:  # accepted: only < and & must be escaped in text
        return message.replace("&", "&amp;").replace("<", "&lt;")
    return html.escape(message)


def make_app(dsn: str, mistakes: set[str]) -> web.Application:
    """TechEmpower's six tests, done right except for the named ``mistakes``."""
    remembered: dict[int, int] = {}  # the "lazy-cache" mistake: filled as rows are read

    async def pool(app: web.Application) -> AsyncIterator[None]:
        app[POOL] = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
        yield
        await app[POOL].close()

    async def cache(app: web.Application) -> AsyncIterator[None]:
        async with app[POOL].acquire() as conn:
            worlds = dict(await conn.fetch("SELECT id, randomnumber FROM world"))
            fortunes = [(r["id"], r["message"]) for r in await conn.fetch("SELECT * FROM fortune")]
        app[CACHE] = Cache(worlds, fortunes)
        yield

    async def plaintext(request: web.Request) -> web.Response:
        content_type = "text/html" if "plaintext-as-html" in mistakes else "text/plain"
        return web.Response(text=HELLO, content_type=content_type)

    async def json_(request: web.Request) -> web.Response:
        key = "msg" if "wrong-json-key" in mistakes else "message"
        return web.json_response({key: HELLO})

    def world(world_id: int, number: Any) -> dict[str, Any]:
        if "random-number-not-from-db" in mistakes:
            number = number % 10_000 + 1
        if "number-as-string" in mistakes:
            number = str(number)
        return {"id": world_id, "randomNumber": number}

    async def read(request: web.Request, conn: asyncpg.Connection, world_id: int) -> Any:
        if "cache-at-startup" in mistakes:
            return request.app[CACHE].worlds[world_id]
        return await conn.fetchval(WORLD_BY_ID, world_id)

    async def db(request: web.Request) -> web.Response:
        if "db-error" in mistakes:
            raise web.HTTPInternalServerError(text="boom: the pool is gone")
        world_id = 42 if "fixed-id" in mistakes else rules.random_id()
        async with request.app[POOL].acquire() as conn:
            return web.json_response(world(world_id, await read(request, conn, world_id)))

    async def queries(request: web.Request) -> web.Response:
        ids = [rules.random_id() for _ in range(clamp(request.query.get("queries"), mistakes))]
        async with request.app[POOL].acquire() as conn:
            if "batched-reads" in mistakes:
                numbers = dict(await conn.fetch(WORLDS_BY_IDS, ids))
            else:
                numbers = {}
                for world_id in ids:
                    if "lazy-cache" in mistakes and world_id in remembered:
                        numbers[world_id] = remembered[world_id]
                    else:
                        numbers[world_id] = await read(request, conn, world_id)
                        remembered[world_id] = numbers[world_id]
        worlds = [world(world_id, numbers[world_id]) for world_id in ids]
        if "single-query-as-object" in mistakes and len(ids) == 1:
            return web.json_response(worlds[0])
        return web.json_response(worlds)

    async def fortunes(request: web.Request) -> web.Response:
        if "cache-at-startup" in mistakes:
            rows = list(request.app[CACHE].fortunes)
        else:
            rows = [(r[0], r[1]) for r in await request.app[POOL].fetch("SELECT * FROM fortune")]
        if "no-added-fortune" not in mistakes:
            rows.append((0, ADDED_FORTUNE))
        rows.sort(key=lambda r: r[0] if "sorted-by-id" in mistakes else r[1])
        body = "".join(f"<tr><td>{i}</td><td>{escape(m, mistakes)}</td></tr>" for i, m in rows)
        title = "" if "no-title" in mistakes else "<title>Fortunes</title>"
        page = (
            f"<!DOCTYPE html><html><head>{title}</head><body><table>"
            f"<tr><th>id</th><th>message</th></tr>{body}</table></body></html>"
        )
        if "mojibake" in mistakes:
            page = page.encode().decode("latin-1")
        content_type = "text/html" if "no-charset" in mistakes else "text/html; charset=utf-8"
        return web.Response(body=page.encode(), headers={"Content-Type": content_type})

    async def updates(request: web.Request) -> web.Response:
        ids = rules.random_ids(clamp(request.query.get("queries"), mistakes))
        async with request.app[POOL].acquire() as conn:
            if "updates-batched-reads" in mistakes:
                numbers = dict(await conn.fetch(WORLDS_BY_IDS, ids))
            elif {"updates-without-reads", "cache-at-startup"} & mistakes:
                numbers = {world_id: 0 for world_id in ids}  # "it is about to change anyway"
            else:
                numbers = {world_id: await conn.fetchval(WORLD_BY_ID, world_id) for world_id in ids}
            worlds = [world(world_id, numbers[world_id]) for world_id in ids]
            if "updates-unchanged" not in mistakes:
                for item in worlds:
                    item["randomNumber"] = rules.random_id()
            if "updates-not-persisted" not in mistakes:
                await conn.executemany(
                    "UPDATE world SET randomnumber = $2 WHERE id = $1",
                    sorted((w["id"], w["randomNumber"]) for w in worlds),
                )
        return web.json_response(worlds)

    async def no_server_header(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Server"] = ""

    app = web.Application()
    app.cleanup_ctx.append(pool)
    if "cache-at-startup" in mistakes:
        app.cleanup_ctx.append(cache)
    if "no-server-header" in mistakes:
        app.on_response_prepare.append(no_server_header)
    for path, handler in [
        ("/plaintext", plaintext),
        ("/json", json_),
        ("/db", db),
        ("/queries", queries),
        ("/fortunes", fortunes),
        ("/updates", updates),
    ]:
        app.router.add_get(path, handler)
    return app


async def check(
    dsn: str, tests: list[str], *mistakes: str, release: bool = True
) -> list[tuple[str, str]]:
    """The checker's failures for the in-process server; ``release`` lets it stop the server."""
    server = TestServer(make_app(dsn, set(mistakes)), host="127.0.0.1")
    async with server:
        failures = await check_implementation(
            str(server.make_url("")), tests, dsn, release=server.close if release else None
        )
    return [(f.test, f.reason) for f in failures]


async def test_a_correct_implementation_passes(tfb_dsn: str) -> None:
    assert await check(tfb_dsn, list(servers.TESTS)) == []


@pytest.mark.parametrize(
    ("mistake", "test", "reason"),
    [
        ("plaintext-as-html", "plaintext", "Content-Type 'text/html; charset=utf-8', expected"),
        ("no-server-header", "plaintext", "GET /plaintext: no Server header"),
        ("wrong-json-key", "json", "{'msg': 'Hello, World!'}, not"),
        ("db-error", "db", "GET /db: HTTP 500: 'boom: the pool is gone'"),
        ("random-number-not-from-db", "db", "the database holds"),
        ("number-as-string", "db", "randomNumber is '"),
        ("fixed-id", "db", "10 requests all gave id 42: not random"),
        ("unclamped-queries", "queries", "GET /queries?queries=501: 501 objects, expected 500"),
        ("single-query-as-object", "queries", "GET /queries: a JSON dict, not a list"),
        ("unescaped", "fortunes", "literal <script> in the body: messages not escaped"),
        ("double-escaped", "fortunes", "row 1 (id 11): escaped twice: '&amp;lt;script&amp;gt;"),
        ("ampersand-unescaped", "fortunes", "'&' is not escaped in"),
        ("sorted-by-id", "fortunes", "rows not sorted by message: row 1 is ('0', "),
        ("no-added-fortune", "fortunes", "the fortune added at request time (0, "),
        ("no-charset", "fortunes", "expected 'text/html; charset=utf-8'"),
        ("mojibake", "fortunes", "the Japanese fortune"),
        (
            "no-title",
            "fortunes",
            "template after '<!doctype html> <html> <head>': '</head>' where '<title>' belongs",
        ),
        ("unclamped-queries", "updates", "GET /updates?queries=501: 501 objects, expected 500"),
        ("updates-not-persisted", "updates", "update not persisted"),
        ("updates-unchanged", "updates", "randomNumber is not being changed"),
    ],
)
async def test_the_checker_names_the_mistake(
    tfb_dsn: str, mistake: str, test: str, reason: str
) -> None:
    failures = await check(tfb_dsn, [test], mistake)
    assert len(failures) == 1, failures
    assert failures[0][0] == test
    assert reason in failures[0][1]


async def test_a_mistake_fails_only_its_own_test(tfb_dsn: str) -> None:
    failures = await check(tfb_dsn, list(servers.TESTS), "sorted-by-id")
    assert [test for test, _ in failures] == ["fortunes"]


async def test_a_server_that_is_down_fails_with_the_request_error(tfb_dsn: str) -> None:
    port = servers.free_port()  # nothing listens there
    failures = await check_implementation(f"http://127.0.0.1:{port}", ["json"], tfb_dsn)
    assert len(failures) == 1
    assert failures[0].reason.startswith("request failed: ClientConnectorError")


# --- servers that remember the database instead of reading it -------------------------


async def test_a_server_that_loads_everything_at_startup_fails_every_database_test(
    tfb_dsn: str,
) -> None:
    """It answers from memory: stale rows, no fresh fortune, and PostgreSQL counts no reads."""
    failures = dict(await check(tfb_dsn, list(servers.TESTS), "cache-at-startup"))
    assert set(failures) == {"db", "queries", "fortunes", "updates"}, failures
    stale = "served from memory, not read from the database"
    assert stale in failures["db"]
    assert "0 statements read world" in failures["db"]
    assert "during 5 x GET /db: each request must read the database" in failures["db"]
    assert stale in failures["queries"]
    assert "0 statements read world" in failures["queries"]
    assert "the fortune the checker inserted just before the request" in failures["fortunes"]
    assert "0 statements read fortune" in failures["fortunes"]
    # /updates looks right over HTTP (new numbers, persisted): only the counts tell.
    assert failures["updates"].startswith(
        "0 SELECTs read world for 45 rows returned by 2 x GET /updates?queries=20, "
        "1 x GET /updates?queries=5 (45 statements read the table, 45 of them UPDATEs"
    )


async def test_reading_the_rows_of_queries_in_one_statement_is_rejected(tfb_dsn: str) -> None:
    failures = await check(tfb_dsn, list(servers.DB_TESTS), "batched-reads")
    assert [test for test, _ in failures] == ["queries"]
    assert re.fullmatch(
        r"3 statements read world \(PostgreSQL's pg_stat_user_tables\.seq_scan of an "
        r"index-less copy of world\) for \d+ distinct rows returned by "
        r"2 x GET /queries\?queries=500, 1 x GET /queries\?queries=20: each row must be read "
        r"by its own SELECT, not served from memory nor batched in one WHERE id = ANY\(\.\.\.\)",
        failures[0][1],
    ), failures


@pytest.mark.parametrize(
    ("mistake", "reads", "scans"),
    [("updates-batched-reads", 3, 48), ("updates-without-reads", 0, 45)],
)
async def test_updates_must_read_every_row_with_its_own_select(
    tfb_dsn: str, mistake: str, reads: int, scans: int
) -> None:
    failures = await check(tfb_dsn, ["updates"], mistake)
    assert failures == [
        (
            "updates",
            f"{reads} SELECTs read world for 45 rows returned by 2 x GET /updates?queries=20, "
            f"1 x GET /updates?queries=5 ({scans} statements read the table, 45 of them "
            "UPDATEs, in PostgreSQL's statistics): each row must be read by its own SELECT "
            "before it is updated",
        )
    ]


async def test_a_cache_filled_as_rows_are_read_is_caught(tfb_dsn: str) -> None:
    """Rows read once are answered from memory afterwards: repeated ids give it away."""
    failures = dict(await check(tfb_dsn, ["queries"], "lazy-cache"))
    assert re.search(r"\d+ statements read world .* for \d+ distinct rows", failures["queries"])
    assert "served from memory, not read from the database" in failures["queries"]


async def test_the_counts_wait_for_postgresql_when_the_server_keeps_running(
    tfb_dsn: str,
) -> None:
    """tfb.run checks servers it keeps running: no release, the idle flush is waited for."""
    assert await check(tfb_dsn, ["queries", "updates"], release=False) == []
    started = time.monotonic()
    failures = await check(tfb_dsn, ["queries"], "batched-reads", release=False)
    assert [test for test, _ in failures] == ["queries"]
    assert failures[0][1].startswith("3 statements read world")
    assert time.monotonic() - started < STATS_FLUSH_BOUND + 10


# --- escaping, judged on what the page says ------------------------------------------


@pytest.mark.parametrize("mistake", ["numeric-references", "minimal-escaping"])
async def test_every_escaping_techempower_accepts_passes(tfb_dsn: str, mistake: str) -> None:
    assert await check(tfb_dsn, ["fortunes"], mistake) == []


@pytest.mark.parametrize(
    ("message", "raw", "problem"),
    [
        ("a < b & c", "a &lt; b &amp; c", None),
        ("a < b & c", "a &#60; b &amp; c", None),
        ('it\'s "x" > y', 'it\'s "x" > y', None),
        ('it\'s "x" > y', "it&#X27;s &quot;x&quot; &gt; y", None),
        ("1+1 — (a/b)", "1&#43;1 &mdash; &#40;a&#x2f;b&#41;", None),
        ("a < b", "a < b", "'<' is not escaped in 'a < b'"),
        ("a & b", "a & b", "'&' is not escaped in 'a & b'"),
        ("a < b", "a &amp;lt; b", "escaped twice: 'a &amp;lt; b'"),
        ("a & b", "a &amp;amp; b", "escaped twice: 'a &amp;amp; b'"),
        ("a &amp; b", "a &amp; b", "'a &amp; b' reads 'a & b', not the database's 'a &amp; b'"),
        ("ab", "abc", "'abc' reads 'abc', not the database's 'ab'"),
        ("a & b", "a &#38; b", "'&' is written '&#38; b'..., not one of '&amp;', in 'a &#38; b'"),
        (
            "a < b",
            "a &LT; b",
            "'<' is written '&LT; b'..., not one of '&lt;', '&#60;', '&#060;', '&#x3c;', "
            "in 'a &LT; b'",
        ),
        ("フ", "&#12501;", "'フ' is written '&#12501;'..., not one of 'フ', in '&#12501;'"),
    ],
)
def test_escaping_is_judged_without_converting_references(
    message: str, raw: str, problem: str | None
) -> None:
    assert escaping_problem(message, raw) == problem


# --- the database is left as found ---------------------------------------------------


async def database_state(dsn: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        return {
            "worlds": dict(await conn.fetch("SELECT id, randomnumber FROM world")),
            "fortunes": sorted(tuple(r) for r in await conn.fetch("SELECT * FROM fortune")),
            "tables": sorted(
                r[0]
                for r in await conn.fetch(
                    "SELECT relname FROM pg_class WHERE relkind = 'r' "
                    "AND relnamespace = 'public'::regnamespace"
                )
            ),
            "indexes": sorted(
                tuple(r)
                for r in await conn.fetch(
                    "SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'public'"
                )
            ),
            "others": sorted(
                r[0]
                for r in await conn.fetch(
                    "SELECT relname FROM pg_class WHERE relname LIKE 'tfb%' "
                    "UNION ALL SELECT proname FROM pg_proc WHERE proname LIKE 'tfb%'"
                )
            ),
        }
    finally:
        await conn.close()


async def test_a_failing_check_leaves_the_database_as_it_found_it(tfb_dsn: str) -> None:
    before = await database_state(tfb_dsn)
    assert len(before["fortunes"]) == 12
    assert before["others"] == []
    failures = await check(tfb_dsn, list(servers.TESTS), "cache-at-startup", "db-error")
    assert {test for test, _ in failures} == set(servers.DB_TESTS)
    assert await database_state(tfb_dsn) == before


async def test_a_check_interrupted_by_a_crash_is_repaired_by_the_next(tfb_dsn: str) -> None:
    before = await database_state(tfb_dsn)
    conn = await asyncpg.connect(tfb_dsn)
    try:  # what a checker killed during its counted /queries leaves behind
        await conn.execute(
            """
            ALTER TABLE world RENAME TO tfb_check_world;
            CREATE TABLE tfb_check_world_db (LIKE tfb_check_world);
            CREATE TABLE world (LIKE tfb_check_world);
            INSERT INTO world SELECT id, randomnumber % 10000 + 1 FROM tfb_check_world;
            INSERT INTO fortune VALUES (5000, 'Checker''s fortune 0123abcd: <b>');
            """
        )
    finally:
        await conn.close()
    assert await check(tfb_dsn, ["db", "fortunes"]) == []
    assert await database_state(tfb_dsn) == before


# --- output of wrk ---------------------------------------------------------------------

WRK_OUTPUT = """\
Running 3s test @ http://127.0.0.1:40000/json
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.21ms    1.02ms  20.11ms   90.00%
    Req/Sec    19.90k     1.10k   21.00k    70.00%
  Latency Distribution
     50%    3.01ms
     75%    3.50ms
     90%    4.00ms
     99%    1.20s
  59700 requests in 3.00s, 9.20MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:  19899.51
Transfer/sec:      3.07MB
"""


def test_wrk_output_is_read() -> None:
    result = parse_wrk(WRK_OUTPUT)
    assert (result.requests_per_s, result.p99_ms, result.requests) == (19899.51, 1200.0, 59700)
    assert (result.non_2xx, result.socket_errors) == (7, 5)


# --- aiosite's own implementation ----------------------------------------------


@pytest.fixture(params=["aiosite", "aiosite-orm"])
def aiosite_server(request: pytest.FixtureRequest, tfb_dsn: str) -> Iterator[servers.Server]:
    """aiosite's implementation (bench/tfb/aiosite_site) on this virtualenv's python."""
    server = servers.start(servers.REGISTRY[request.param], python=sys.executable, dsn=tfb_dsn)
    yield server
    servers.stop(server)


@pytest.mark.e2e
async def test_aiosite_passes_the_checker(aiosite_server: servers.Server, tfb_dsn: str) -> None:
    async def release() -> None:
        await asyncio.to_thread(servers.stop, aiosite_server)

    tests = aiosite_server.impl.tests
    failures = await check_implementation(aiosite_server.base_url, tests, tfb_dsn, release=release)
    assert failures == [], "\n".join(map(str, failures))
