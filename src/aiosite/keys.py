"""Every application and request key aiosite defines, in one place.

State hangs on the application (``web.AppKey``) or on the request
(``web.RequestKey``), never in module globals, so two sites can live in one process.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from aiosite.apps import AppRegistry
    from aiosite.db.engine import Database
    from aiosite.debug.blocking import BlockDetector
    from aiosite.settings import Settings
    from aiosite.web.routing import SiteRoutes, UrlReverser
    from aiosite.web.static import StaticFiles
    from aiosite.web.templates import Templates

SETTINGS: web.AppKey[Settings] = web.AppKey("aiosite.settings")
APPS: web.AppKey[AppRegistry] = web.AppKey("aiosite.apps")
TEMPLATES: web.AppKey[Templates] = web.AppKey("aiosite.templates")
STATIC_FILES: web.AppKey[StaticFiles] = web.AppKey("aiosite.static")
URLS: web.AppKey[UrlReverser] = web.AppKey("aiosite.urls")
ROUTES: web.AppKey[SiteRoutes] = web.AppKey("aiosite.routes")
BLOCK_DETECTOR: web.AppKey[BlockDetector] = web.AppKey("aiosite.block_detector")
DATABASE: web.AppKey[Database] = web.AppKey("aiosite.database")

REQUEST_ID: web.RequestKey[str] = web.RequestKey("aiosite.request_id")
# The request's database session, created by the first db_session(request) call.
DB_SESSION: web.RequestKey[AsyncSession] = web.RequestKey("aiosite.db_session")


def state_of(target: web.Request | web.Application) -> Mapping[Any, Any]:
    """Where a site's keys are read: the request's application chain, or the application."""
    return target.config_dict if isinstance(target, web.Request) else target


def settings_of(target: web.Request | web.Application) -> Settings:
    """The site's settings, from a request or the application."""
    settings: Settings = state_of(target)[SETTINGS]
    return settings
