"""The data layer: SQLAlchemy 2 async engine, models, the request's session.

The battery opens the site's database when the application starts (connecting once, so
a wrong URL stops the start with a clear error; a server that is down does too in
development and test, while elsewhere the site starts and answers 503 until it is back:
``aiosite.db.startup``) and disposes of its pool when the application stops. Its
exception handlers tell the client what a database failure means (503, 409).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from aiosite.apps import AppRegistry
from aiosite.battery import Battery
from aiosite.db.config import DatabaseSettings
from aiosite.db.engine import DATABASE, Database
from aiosite.db.errors import DATABASE_FAILED, add_exception_handlers, database_failed
from aiosite.db.readiness import (
    MigrationsAtHead,
    database_answers,
    has_migrations,
    pool_samples,
)
from aiosite.db.startup import open_database
from aiosite.hooks import hooks_of
from aiosite.probes import probes_of
from aiosite.settings import Settings


def _attach(app: web.Application, settings: Settings, registry: AppRegistry) -> None:
    add_exception_handlers(hooks_of(app))

    async def database_ctx(app: web.Application) -> AsyncIterator[None]:
        database = await open_database(settings)
        app[DATABASE] = database
        yield
        await database.dispose()

    app.cleanup_ctx.append(database_ctx)
    _report(app, settings)


def _report(app: web.Application, settings: Settings) -> None:
    """Readiness checks (``/readyz``) and pool gauges (``/metrics``)."""
    probes = probes_of(app)
    probes.add_readiness_check("database", lambda: database_answers(app))
    if has_migrations(settings):
        migrations = MigrationsAtHead(app, settings)
        app.on_startup.append(migrations.load_heads)
        probes.add_readiness_check("migrations", migrations)
    probes.add_metrics_source(lambda: pool_samples(app))


battery = Battery("aiosite.db", _attach, {"database": DatabaseSettings})
setup = battery.setup

__all__ = ["DATABASE", "DATABASE_FAILED", "Database", "battery", "database_failed", "setup"]
