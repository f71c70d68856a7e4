"""A third-party extension, written only against aiosite's public API: maintenance mode.

It is what docs/extending.md builds, part by part: a settings section, request and
response hooks, an exception handler, startup and cleanup work, routes, a CLI command and
template helpers. A project lists it in ``apps:`` like any app::

    apps:
      - mysite.home
      - tests.extending.maintenance
"""

from aiosite import App

from .commands import commands
from .config import MaintenanceSettings
from .hooks import SiteUnderMaintenance, maintenance_context, maintenance_status, setup

app = App(
    "maintenance",
    prefix="/maintenance",
    settings=MaintenanceSettings,
    setup=setup,
    commands=commands,
    context_processors=[maintenance_context],
    template_globals={"maintenance_status": maintenance_status},
)

__all__ = ["MaintenanceSettings", "SiteUnderMaintenance", "app"]
