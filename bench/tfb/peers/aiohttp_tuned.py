"""aiohttp tuned for speed: uvloop, orjson, raw asyncpg pool with cached prepared statements.

Run: `python -m tfb.peers.aiohttp_tuned --port P` (cwd=bench/).
"""

import argparse
from collections.abc import AsyncIterator
from operator import attrgetter
from typing import Any

import asyncpg
import jinja2
import orjson
import uvloop
from aiohttp import web

from tfb import rules
from tfb.peers.sa_models import TEMPLATES_DIR

# asyncpg keeps a per-connection cache of prepared statements keyed by SQL text, so
# conn.fetchval(SQL, ...) parses and plans each statement once per connection.
READ_ROW = "SELECT randomnumber FROM world WHERE id = $1"
READ_FORTUNES = "SELECT id, message FROM fortune"
# One round trip for every row; ids arrive sorted so concurrent updates lock rows in one order.
WRITE_ROWS = (
    "UPDATE world SET randomnumber = v.r"
    " FROM (SELECT unnest($1::int[]) AS id, unnest($2::int[]) AS r) AS v"
    " WHERE world.id = v.id"
)

POOL = web.AppKey("pool", asyncpg.Pool)
FORTUNES_TEMPLATE = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True, auto_reload=False
).get_template("fortunes.html")
BY_MESSAGE = attrgetter("message")

PLAINTEXT = b"Hello, World!"
JSON_MESSAGE = {"message": "Hello, World!"}


def json_response(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")


async def plaintext(request: web.Request) -> web.Response:
    return web.Response(body=PLAINTEXT, content_type="text/plain")


async def json_(request: web.Request) -> web.Response:
    return json_response(JSON_MESSAGE)


async def db(request: web.Request) -> web.Response:
    id_ = rules.random_id()
    number = await request.app[POOL].fetchval(READ_ROW, id_)
    return json_response({"id": id_, "randomNumber": number})


async def queries(request: web.Request) -> web.Response:
    ids = [rules.random_id() for _ in range(rules.queries_param(request.query.get("queries")))]
    async with request.app[POOL].acquire() as conn:
        worlds = [{"id": id_, "randomNumber": await conn.fetchval(READ_ROW, id_)} for id_ in ids]
    return json_response(worlds)


class FortuneRow:
    """Attribute access for the shared template (which reads fortune.id / fortune.message)."""

    __slots__ = ("id", "message")

    def __init__(self, id_: int, message: str) -> None:
        self.id = id_
        self.message = message


async def fortunes(request: web.Request) -> web.Response:
    rows = [
        FortuneRow(id_, message) for id_, message in await request.app[POOL].fetch(READ_FORTUNES)
    ]
    rows.append(FortuneRow(0, rules.ADDED_FORTUNE))
    rows.sort(key=BY_MESSAGE)
    body = FORTUNES_TEMPLATE.render(fortunes=rows)
    return web.Response(text=body, content_type="text/html")


async def updates(request: web.Request) -> web.Response:
    ids = sorted(rules.random_ids(rules.queries_param(request.query.get("queries"))))
    numbers = [rules.random_id() for _ in ids]
    async with request.app[POOL].acquire() as conn:
        for id_ in ids:
            await conn.fetchval(READ_ROW, id_)  # the rules require reading every row first
        await conn.execute(WRITE_ROWS, ids, numbers)
    return json_response([{"id": i, "randomNumber": n} for i, n in zip(ids, numbers, strict=True)])


async def database(app: web.Application) -> AsyncIterator[None]:
    size = rules.POOL_SIZE
    async with asyncpg.create_pool(rules.DATABASE_URL, min_size=size, max_size=size) as pool:
        app[POOL] = pool
        yield


def create_app() -> web.Application:
    app = web.Application()
    app.cleanup_ctx.append(database)
    app.router.add_get("/plaintext", plaintext)
    app.router.add_get("/json", json_)
    app.router.add_get("/db", db)
    app.router.add_get("/queries", queries)
    app.router.add_get("/fortunes", fortunes)
    app.router.add_get("/updates", updates)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    web.run_app(
        create_app(),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
