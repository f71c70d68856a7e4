"""aiohttp as usually written: asyncio loop, web.json_response, SQLAlchemy 2 async ORM, jinja2.

Run: `python -m tfb.peers.aiohttp_plain --port P` (cwd=bench/).
"""

import argparse
from collections.abc import AsyncIterator

import jinja2
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from tfb import rules
from tfb.peers.sa_models import (
    TEMPLATES_DIR,
    Fortune,
    World,
    create_engine,
    create_sessionmaker,
)

SESSIONMAKER = web.AppKey("sessionmaker", async_sessionmaker)
FORTUNES_TEMPLATE = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True
).get_template("fortunes.html")


def world_json(world: World) -> dict[str, int]:
    return {"id": world.id, "randomNumber": world.randomnumber}


async def plaintext(request: web.Request) -> web.Response:
    return web.Response(text="Hello, World!")


async def json_(request: web.Request) -> web.Response:
    return web.json_response({"message": "Hello, World!"})


async def db(request: web.Request) -> web.Response:
    async with request.app[SESSIONMAKER]() as session:
        world = await session.get(World, rules.random_id())
    return web.json_response(world_json(world))


async def queries(request: web.Request) -> web.Response:
    count = rules.queries_param(request.query.get("queries"))
    async with request.app[SESSIONMAKER]() as session:
        worlds = [await session.get(World, rules.random_id()) for _ in range(count)]
    return web.json_response([world_json(world) for world in worlds])


async def fortunes(request: web.Request) -> web.Response:
    async with request.app[SESSIONMAKER]() as session:
        rows = list(await session.scalars(select(Fortune)))
    # Transient object: never added to the session, so never written.
    rows.append(Fortune(id=0, message=rules.ADDED_FORTUNE))
    rows.sort(key=lambda fortune: fortune.message)
    body = FORTUNES_TEMPLATE.render(fortunes=rows)
    return web.Response(text=body, content_type="text/html")


async def updates(request: web.Request) -> web.Response:
    count = rules.queries_param(request.query.get("queries"))
    async with request.app[SESSIONMAKER]() as session, session.begin():
        worlds = [await session.get(World, id_) for id_ in rules.random_ids(count)]
        for world in worlds:
            world.randomnumber = rules.random_id()
        # Commit flushes the UPDATEs; SQLAlchemy orders them by primary key.
    return web.json_response([world_json(world) for world in worlds])


async def database(app: web.Application) -> AsyncIterator[None]:
    engine = create_engine()
    app[SESSIONMAKER] = create_sessionmaker(engine)
    yield
    await engine.dispose()


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
    web.run_app(create_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
