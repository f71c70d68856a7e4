"""What the extension attaches to a site: its state, hooks, exception handler and the
task that watches the flag file while the site runs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from aiohttp import web

from aiosite import AppRegistry, Settings, hooks_of

from .config import MaintenanceSettings


class SiteUnderMaintenance(Exception):
    """Raised by the request hook; its exception handler answers 503."""


@dataclass
class Maintenance:
    on: bool = False
    watching: bool = False


MAINTENANCE = web.AppKey("maintenance.state", Maintenance)


def setup(app: web.Application, settings: Settings, registry: AppRegistry) -> None:
    config = settings.section(MaintenanceSettings)
    flag = settings.project_dir / config.flag_file
    allowed = tuple(config.allow_paths)
    state = app[MAINTENANCE] = Maintenance()
    hooks = hooks_of(app)

    def refuse_during_maintenance(request: web.Request) -> None:
        if state.on and not request.path.startswith(allowed):
            raise SiteUnderMaintenance
        return None

    # After the host check (a forged Host is still a 400), before the browser session is
    # loaded (a refused request costs no session store round trip).
    hooks.add_request_hook(
        refuse_during_maintenance,
        name="maintenance.gate",
        after=["aiosite.allowed_hosts"],
        before=["aiosite.sessions"],
    )

    def mark_response(request: web.Request, response: web.StreamResponse) -> None:
        if state.on:
            response.headers["X-Maintenance"] = "on"

    hooks.add_response_hook(mark_response, name="maintenance.mark")

    def unavailable(request: web.Request, exc: SiteUnderMaintenance) -> None:
        # Raising an HTTP error answers with the site's own 503 page (or JSON).
        raise web.HTTPServiceUnavailable(
            text=config.message, headers={"Retry-After": str(config.retry_after)}
        )

    hooks.add_exception_handler(SiteUnderMaintenance, unavailable)

    async def watch_flag(app: web.Application) -> AsyncIterator[None]:
        async def poll() -> None:
            while True:
                state.on = flag.exists()
                await asyncio.sleep(config.poll_seconds)

        state.on = flag.exists()
        task = asyncio.create_task(poll())
        state.watching = True
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        state.watching = False

    app.cleanup_ctx.append(watch_flag)


def maintenance_context(request: web.Request) -> Mapping[str, Any]:
    """Every template sees ``maintenance_on``."""
    return {"maintenance_on": request.config_dict[MAINTENANCE].on}


@jinja2.pass_context
def maintenance_status(ctx: jinja2.runtime.Context) -> str:
    """``{{ maintenance_status() }}`` in templates."""
    state = ctx["request"].config_dict[MAINTENANCE]
    return "under maintenance" if state.on else "open"
