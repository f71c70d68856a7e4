"""The data layer: SQLAlchemy 2 async engine, models, request-scoped sessions.

``setup`` opens the site's database when the application starts (connecting once, so a
wrong URL or a server that is down stops the start with a clear error) and disposes of
its pool when the application stops.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from aiosite.db.engine import Database
from aiosite.keys import DATABASE
from aiosite.settings import Settings


def setup(app: web.Application, settings: Settings) -> None:
    async def database_ctx(app: web.Application) -> AsyncIterator[None]:
        database = Database(settings)
        try:
            await database.check()
        except BaseException:
            await database.dispose()
            raise
        app[DATABASE] = database
        yield
        await database.dispose()

    app.cleanup_ctx.append(database_ctx)
