"""The handlers: plain aiohttp handlers using aiosite's data layer and templates."""

from operator import attrgetter, itemgetter

from aiohttp import web
from sqlalchemy import bindparam, select
from tfb.rules import ADDED_FORTUNE, queries_param, random_id, random_ids

from aiosite import Prepared, db_session, fast_path, json_response, render

from .models import Fortune, World

# The fast path: statements built from the models, compiled once, prepared on the driver.
WORLD_BY_ID = Prepared(select(World.id, World.randomnumber).where(World.id == bindparam("id")))
ALL_FORTUNES = Prepared(select(Fortune.id, Fortune.message))


async def plaintext(request: web.Request) -> web.Response:
    return web.Response(text="Hello, World!")


async def json(request: web.Request) -> web.Response:
    return json_response({"message": "Hello, World!"})


def _world(row: dict[str, int]) -> dict[str, int]:
    return {"id": row["id"], "randomNumber": row["randomnumber"]}


async def single_query(request: web.Request) -> web.Response:
    row = await fast_path(request).fetch_one(WORLD_BY_ID, id=random_id())
    return json_response(_world(row))


async def multiple_queries(request: web.Request) -> web.Response:
    count = queries_param(request.query.get("queries"))
    async with fast_path(request).connection() as db:
        worlds = [_world(await db.fetch_one(WORLD_BY_ID, id=random_id())) for _ in range(count)]
    return json_response(worlds)


async def fortunes(request: web.Request) -> web.Response:
    # The rows as they come: the template reads {{ fortune.message }} from a row as from
    # the added dict, and both sort by ["message"].
    rows = await fast_path(request).fetch(ALL_FORTUNES)
    rows.append({"id": 0, "message": ADDED_FORTUNE})
    rows.sort(key=itemgetter("message"))
    return await render(request, "world/fortunes.html", {"fortunes": rows})


async def updates(request: web.Request) -> web.Response:
    count = queries_param(request.query.get("queries"))
    async with fast_path(request).connection() as db:
        worlds = [
            {"id": world_id, "randomnumber": random_id()}
            for world_id in random_ids(count)
            if await db.fetch_one(WORLD_BY_ID, id=world_id) is not None
        ]
        await db.update_by_pk(World, worlds)
    return json_response([_world(world) for world in worlds])


# --- the same tests through the request's ORM session ---------------------------------


async def orm_single_query(request: web.Request) -> web.Response:
    world = await db_session(request).get(World, random_id())
    assert world is not None
    return json_response(world.as_json())


async def orm_multiple_queries(request: web.Request) -> web.Response:
    count = queries_param(request.query.get("queries"))
    session = db_session(request)
    worlds = [await session.get(World, random_id()) for _ in range(count)]
    return json_response([world.as_json() for world in worlds if world is not None])


async def orm_fortunes(request: web.Request) -> web.Response:
    result = await db_session(request).scalars(select(Fortune))
    fortunes = [*result, Fortune(id=0, message=ADDED_FORTUNE)]
    fortunes.sort(key=attrgetter("message"))
    return await render(request, "world/fortunes.html", {"fortunes": fortunes})


async def orm_updates(request: web.Request) -> web.Response:
    count = queries_param(request.query.get("queries"))
    session = db_session(request)
    worlds = []
    # No UPDATE goes out between the reads (with autoflush, each get() would flush the
    # change before it and lock that row): the rows are read without locks, and the
    # request's session writes them all when the handler returns, in one round trip
    # and in primary-key order. Every request locks its rows in that one order, so two
    # requests never wait for each other in a circle (PostgreSQL's "deadlock detected").
    with session.no_autoflush:
        for world_id in sorted(random_ids(count)):
            world = await session.get(World, world_id)
            if world is not None:
                world.randomnumber = random_id()
                worlds.append(world)
    return json_response([world.as_json() for world in worlds])
