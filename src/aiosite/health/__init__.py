"""Health endpoints: ``/healthz`` (the process is alive) and ``/readyz`` (the site can
serve: its database, migrations, Redis... answer), for load balancers and orchestrators.

Batteries and apps register readiness checks with ``probes_of(app).add_readiness_check``
(aiosite.probes); ``/readyz`` runs them all at once, each under its timeout. Both routes
answer any Host header and plain HTTP (a load balancer probes by IP address), read no
session, are never cached, and are never shed by the site-wide ``budgets:``.
"""

from __future__ import annotations

from aiohttp import web

from aiosite.apps import AppRegistry
from aiosite.battery import Battery
from aiosite.health.config import HealthSettings
from aiosite.health.readiness import OK, ReadinessRunner
from aiosite.keys import PROBE
from aiosite.probes import probes_of
from aiosite.settings import Settings

NO_STORE = {"Cache-Control": "no-store"}
# Seconds a load balancer is told to wait before probing a site that is not ready again.
RETRY_AFTER = "5"


async def healthz(request: web.Request) -> web.Response:
    """200 while the process answers: no I/O, so that a slow database never gets a
    healthy process restarted."""
    return web.Response(text="ok", headers=NO_STORE)


class Readyz:
    """``/readyz``: 200 once every readiness check passes, else 503 naming each failure."""

    def __init__(self, runner: ReadinessRunner) -> None:
        self.runner = runner

    async def handle(self, request: web.Request) -> web.Response:
        checks = await self.runner.results()
        if all(result == OK for result in checks.values()):
            return web.json_response({"status": "ready", "checks": checks}, headers=NO_STORE)
        return web.json_response(
            {"status": "unavailable", "checks": checks},
            status=503,
            headers={**NO_STORE, "Retry-After": RETRY_AFTER},
        )


# A load balancer probes by IP address, and must get its answer under load.
setattr(healthz, PROBE, True)
setattr(Readyz.handle, PROBE, True)


def _attach(app: web.Application, settings: Settings, registry: AppRegistry) -> None:
    config = settings.section(HealthSettings)
    if not config.enabled:
        return
    # The checks are read when a probe comes, so that those registered after this
    # battery (by apps, by later batteries) count too.
    runner = ReadinessRunner(
        probes_of(app).readiness_checks, config.check_timeout, config.cache_seconds
    )
    app.router.add_get(config.healthz_path, healthz, name="aiosite:healthz")
    app.router.add_get(config.readyz_path, Readyz(runner).handle, name="aiosite:readyz")


battery = Battery("aiosite.health", _attach, {"health": HealthSettings})
setup = battery.setup

__all__ = ["HealthSettings", "Readyz", "battery", "healthz", "setup"]
