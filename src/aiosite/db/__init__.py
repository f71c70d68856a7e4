"""The data layer: SQLAlchemy 2 async engine, models, the request's session.

The battery opens the site's database when the application starts (connecting once, so
a wrong URL or a server that is down stops the start with a clear error) and disposes of
its pool when the application stops. Its exception handlers tell the client what a
database failure means (503, 409).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from aiosite.apps import AppRegistry
from aiosite.battery import Battery
from aiosite.db.config import DatabaseSettings
from aiosite.db.engine import DATABASE, Database
from aiosite.db.errors import DATABASE_FAILED, add_exception_handlers, database_failed
from aiosite.hooks import hooks_of
from aiosite.settings import Settings


def _attach(app: web.Application, settings: Settings, registry: AppRegistry) -> None:
    add_exception_handlers(hooks_of(app))

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


battery = Battery("aiosite.db", _attach, {"database": DatabaseSettings})
setup = battery.setup

__all__ = ["DATABASE", "DATABASE_FAILED", "Database", "battery", "database_failed", "setup"]
