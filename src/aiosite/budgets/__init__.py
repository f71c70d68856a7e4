"""Per-route budgets: ``@budget(timeout=5.0, concurrency=20, max_body_size=...)`` on a
handler, and site-wide defaults in the ``budgets:`` settings (docs/budgets.md).

Past its timeout a request gets 504 (the handler is cancelled); beyond its concurrency,
503 with ``Retry-After`` at once (no queue); a body declared larger than its
``max_body_size``, 413 before it is read (the security battery's body size hook). A
trip is logged (a WARNING per route and kind at most once a minute) and counted in
``aiosite_budget_trips_total``. The battery's handler wrapper runs on the routes that
have a budget and no others.
"""

from __future__ import annotations

from aiohttp import web

from aiosite.apps import AppRegistry
from aiosite.battery import Battery
from aiosite.budgets.config import BudgetSettings
from aiosite.budgets.decorator import SITE_DEFAULT, Budget, budget
from aiosite.budgets.guard import BudgetGuard
from aiosite.budgets.trips import Trips
from aiosite.hooks import hooks_of
from aiosite.probes import probes_of
from aiosite.settings import Settings

WRAPPER = "aiosite.budgets"


def _attach(app: web.Application, settings: Settings, registry: AppRegistry) -> None:
    trips = Trips()
    guard = BudgetGuard(settings.section(BudgetSettings), trips)
    # Outside every other wrapper but the metrics' (these three are "before *": they wrap
    # in the order of the batteries in aiosite.site): the timeout bounds what the others
    # do too, the debug toolbar's included, and the metrics count the 503s and 504s.
    hooks_of(app).add_handler_wrapper(guard, name=WRAPPER, before="*", routes=guard.applies)
    probes_of(app).add_metrics_source(trips.samples)


battery = Battery("aiosite.budgets", _attach, {"budgets": BudgetSettings})
setup = battery.setup

__all__ = ["SITE_DEFAULT", "Budget", "BudgetSettings", "budget", "setup"]
