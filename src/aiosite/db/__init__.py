"""The data layer: SQLAlchemy 2 async engine, models, request-scoped sessions.

``setup`` opens the site's database when the application starts (connecting once, so a
wrong URL or a server that is down stops the start with a clear error) and disposes of
its pool when the application stops. It also teaches the error pages what database
failures mean for the client (503, 409).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from aiosite.db.engine import Database
from aiosite.db.sessions import translate_error
from aiosite.keys import DATABASE, ERROR_TRANSLATORS
from aiosite.settings import Settings


def setup(app: web.Application, settings: Settings) -> None:
    app.setdefault(ERROR_TRANSLATORS, []).append(translate_error)

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
