"""The TechEmpower checker (bench/tfb/check.py) catches real mistakes, and passes the real thing.

A small aiohttp implementation of the six tests is served in-process, correct or with
one deliberate mistake; the checker must name the mistake. The last tests start aiosite's
own implementation (bench/tfb/aiosite_site) with this virtualenv's python.
"""

from __future__ import annotations

import html
import sys
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from tfb import rules, servers
from tfb.check import ADDED_FORTUNE, check_implementation
from tfb.run import parse_wrk

POOL = web.AppKey("pool", asyncpg.Pool)
HELLO = "Hello, World!"


def clamp(raw: str | None, mistakes: set[str]) -> int:
    if "unclamped-queries" in mistakes:
        return int(raw) if raw and raw.isdigit() and int(raw) > 0 else 1
    try:
        count = int(raw) if raw else 1
    except ValueError:
        return 1
    return min(max(count, 1), 500)


def make_app(dsn: str, mistakes: set[str]) -> web.Application:
    """TechEmpower's six tests, done right except for the named ``mistakes``."""

    async def pool(app: web.Application) -> AsyncIterator[None]:
        app[POOL] = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
        yield
        await app[POOL].close()

    async def plaintext(request: web.Request) -> web.Response:
        content_type = "text/html" if "plaintext-as-html" in mistakes else "text/plain"
        return web.Response(text=HELLO, content_type=content_type)

    async def json_(request: web.Request) -> web.Response:
        key = "msg" if "wrong-json-key" in mistakes else "message"
        return web.json_response({key: HELLO})

    async def read(conn: asyncpg.Connection, world_id: int) -> dict[str, object]:
        number = await conn.fetchval("SELECT randomnumber FROM world WHERE id = $1", world_id)
        if "random-number-not-from-db" in mistakes:
            number = number % 10_000 + 1
        if "number-as-string" in mistakes:
            number = str(number)
        return {"id": world_id, "randomNumber": number}

    async def db(request: web.Request) -> web.Response:
        if "db-error" in mistakes:
            raise web.HTTPInternalServerError(text="boom: the pool is gone")
        world_id = 42 if "fixed-id" in mistakes else rules.random_id()
        async with request.app[POOL].acquire() as conn:
            return web.json_response(await read(conn, world_id))

    async def queries(request: web.Request) -> web.Response:
        count = clamp(request.query.get("queries"), mistakes)
        async with request.app[POOL].acquire() as conn:
            worlds = [await read(conn, rules.random_id()) for _ in range(count)]
        if "single-query-as-object" in mistakes and count == 1:
            return web.json_response(worlds[0])
        return web.json_response(worlds)

    async def fortunes(request: web.Request) -> web.Response:
        rows = [tuple(r) for r in await request.app[POOL].fetch("SELECT id, message FROM fortune")]
        if "no-added-fortune" not in mistakes:
            rows.append((0, ADDED_FORTUNE))
        rows.sort(key=lambda r: r[0] if "sorted-by-id" in mistakes else r[1])
        escape = (lambda m: m) if "unescaped" in mistakes else html.escape
        body = "".join(f"<tr><td>{i}</td><td>{escape(m)}</td></tr>" for i, m in rows)
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
        count = clamp(request.query.get("queries"), mistakes)
        ids = rules.random_ids(count)
        async with request.app[POOL].acquire() as conn:
            worlds = [await read(conn, world_id) for world_id in ids]
            if "updates-unchanged" not in mistakes:
                for world in worlds:
                    world["randomNumber"] = rules.random_id()
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


async def check(dsn: str, tests: list[str], *mistakes: str) -> list[tuple[str, str]]:
    async with TestServer(make_app(dsn, set(mistakes)), host="127.0.0.1") as server:
        failures = await check_implementation(str(server.make_url("")), tests, dsn)
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
        ("random-number-not-from-db", "db", "the database has"),
        ("number-as-string", "db", "randomNumber is '"),
        ("fixed-id", "db", "10 requests all gave id 42: not random"),
        ("unclamped-queries", "queries", "GET /queries?queries=501: 501 objects, expected 500"),
        ("single-query-as-object", "queries", "GET /queries: a JSON dict, not a list"),
        ("unescaped", "fortunes", "literal <script> in the body: messages not escaped"),
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
    tests = aiosite_server.impl.tests
    failures = await check_implementation(aiosite_server.base_url, tests, tfb_dsn)
    assert failures == [], "\n".join(map(str, failures))
