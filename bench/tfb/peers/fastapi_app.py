"""FastAPI as usually written: SQLAlchemy 2 async ORM via a session dependency, Jinja2Templates.

Run: `python -m uvicorn tfb.peers.fastapi_app:app --host 127.0.0.1 --port P --loop uvloop
--http httptools --no-access-log --log-level warning` (cwd=bench/).
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tfb import rules
from tfb.peers.sa_models import (
    TEMPLATES_DIR,
    Fortune,
    World,
    create_engine,
    create_sessionmaker,
)

engine = create_engine()
SessionLocal = create_sessionmaker(engine)
templates = Jinja2Templates(directory=TEMPLATES_DIR)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


async def get_session() -> AsyncIterator[AsyncSession]:
    async with SessionLocal() as session:
        yield session


Session = Annotated[AsyncSession, Depends(get_session)]


def world_json(world: World) -> dict[str, int]:
    return {"id": world.id, "randomNumber": world.randomnumber}


@app.get("/plaintext", response_class=PlainTextResponse)
async def plaintext() -> str:
    return "Hello, World!"


@app.get("/json")
async def json_() -> dict[str, str]:
    return {"message": "Hello, World!"}


@app.get("/db")
async def db(session: Session) -> dict[str, int]:
    world = await session.get(World, rules.random_id())
    return world_json(world)


@app.get("/queries")
async def queries(session: Session, queries: str | None = None) -> list[dict[str, int]]:
    count = rules.queries_param(queries)
    return [world_json(await session.get(World, rules.random_id())) for _ in range(count)]


@app.get("/fortunes", response_class=HTMLResponse)
async def fortunes(request: Request, session: Session) -> HTMLResponse:
    rows = list(await session.scalars(select(Fortune)))
    # Transient object: never added to the session, so never written.
    rows.append(Fortune(id=0, message=rules.ADDED_FORTUNE))
    rows.sort(key=lambda fortune: fortune.message)
    return templates.TemplateResponse(request, "fortunes.html", {"fortunes": rows})


@app.get("/updates")
async def updates(session: Session, queries: str | None = None) -> list[dict[str, int]]:
    count = rules.queries_param(queries)
    async with session.begin():
        worlds = [await session.get(World, id_) for id_ in rules.random_ids(count)]
        for world in worlds:
            world.randomnumber = rules.random_id()
        # Commit flushes the UPDATEs; SQLAlchemy orders them by primary key.
    return [world_json(world) for world in worlds]
