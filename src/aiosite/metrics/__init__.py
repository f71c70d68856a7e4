"""Prometheus metrics at ``/metrics``: requests by route, method and status, their
durations, requests in flight, and what batteries and apps report through
``probes_of(app).add_metrics_source`` (the database pool, open websockets...).

The requests are counted by a handler wrapper that reads the clock twice and updates a
few plain dictionaries (a handler that raised, by a response hook, with the status the
client gets); about once a second (``metrics.flush_interval``) and before a
scrape, the counts are folded into the process's series. Under ``aiosite serve``
(``PROMETHEUS_MULTIPROC_DIR`` set), each worker writes its series to files of its own and
a scrape of any worker reports the sum over its server's workers (aiosite.metrics.files).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from aiosite.apps import AppRegistry
from aiosite.battery import Battery
from aiosite.hooks import hooks_of
from aiosite.keys import PROBE
from aiosite.metrics.access import Access
from aiosite.metrics.config import MetricsSettings
from aiosite.metrics.files import (
    multiprocess_dir,
    multiprocess_root,
    prepare_multiprocess_dir,
    release_multiprocess_dir,
    worker_exited,
)
from aiosite.metrics.runtime import SiteMetrics
from aiosite.probes import probes_of
from aiosite.settings import Settings

SITE_METRICS: web.AppKey[SiteMetrics] = web.AppKey("aiosite.site_metrics", SiteMetrics)
NO_STORE = "no-store"


class MetricsPage:
    """``/metrics``: the exposition, for the networks of ``metrics.allow``."""

    def __init__(self, metrics: SiteMetrics, access: Access) -> None:
        self.metrics = metrics
        self.access = access

    async def handle(self, request: web.Request) -> web.Response:
        if not self.access.allows(request):
            return web.Response(
                status=403,
                text="Forbidden: the metrics are served only to the networks in metrics.allow.",
                headers={"Cache-Control": NO_STORE},
            )
        from prometheus_client import CONTENT_TYPE_LATEST

        return web.Response(
            body=await self.metrics.exposition(),
            headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": NO_STORE},
        )


# Prometheus scrapes a target by its address (the Host header names no site host), and
# the metrics matter most when the site is overloaded.
setattr(MetricsPage.handle, PROBE, True)


def _attach(app: web.Application, settings: Settings, registry: AppRegistry) -> None:
    config = settings.section(MetricsSettings)
    if not config.enabled:
        return
    metrics = app[SITE_METRICS] = SiteMetrics(probes_of(app), config.buckets, config.flush_interval)
    hooks = hooks_of(app)
    # Outermost of the wrappers (with the budgets' and the debug toolbar's, also "before
    # *", by the order of the batteries in aiosite.site): it counts the 503 and 504 a
    # budget answers.
    hooks.add_handler_wrapper(metrics.recorder.wrapper(), name="aiosite.metrics", before="*")
    # A handler that raised is counted with the status of the answer the client gets
    # (503 for a database that is down): the last response hook sees it, after any hook
    # that could change it.
    hooks.add_response_hook(metrics.recorder.response_hook(), name="aiosite.metrics", after="*")
    page = MetricsPage(metrics, Access(config.allow))
    app.router.add_get(config.path, page.handle, name="aiosite:metrics")

    async def metrics_ctx(app: web.Application) -> AsyncIterator[None]:
        metrics.start(multiprocess_dir())
        yield
        await metrics.stop()

    app.cleanup_ctx.append(metrics_ctx)


battery = Battery("aiosite.metrics", _attach, {"metrics": MetricsSettings})
setup = battery.setup

__all__ = [
    "SITE_METRICS",
    "MetricsPage",
    "MetricsSettings",
    "SiteMetrics",
    "battery",
    "multiprocess_root",
    "prepare_multiprocess_dir",
    "release_multiprocess_dir",
    "setup",
    "worker_exited",
]
