"""Every application and request key aiosite defines, in one place.

State hangs on the application (``web.AppKey``) or on the request
(``web.RequestKey``), never in module globals, so two sites can live in one process.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from aiosite.apps import AppRegistry
    from aiosite.db.engine import Database
    from aiosite.debug.blocking import BlockDetector
    from aiosite.sessions import SessionStore
    from aiosite.settings import Settings
    from aiosite.uploads.limits import ResolvedLimits
    from aiosite.uploads.storage import Storage
    from aiosite.web.errors import Core
    from aiosite.web.routing import SiteRoutes, UrlReverser
    from aiosite.web.static import StaticFiles
    from aiosite.web.templates import Templates

# Ends what a battery opened for one request (the database session's transaction). The
# core calls it once the handler is done, with what the handler raised (None when it
# returned): committing work for a response, rolling back for an error.
RequestFinalizer = Callable[[BaseException | None], Awaitable[None]]
# The HTTP error an exception a battery knows means for the client (a database that is
# down: 503), or None; asked by the core before it answers 500.
ErrorTranslator = Callable[[BaseException], web.HTTPException | None]
# Run by the core before the handler of every request (allowed hosts, CSRF): a hook
# refuses the request by raising an HTTPException. A hook returns None, or an awaitable
# when it has async work to do for this request, so that the common case awaits nothing.
RequestHook = Callable[[web.Request], Awaitable[None] | None]
# Run by the core on every response it returns, error pages and redirects included,
# unless the handler prepared (started sending) the response itself: security headers,
# saving the browser session. Returns None or an awaitable, like a RequestHook.
ResponseHook = Callable[[web.Request, web.StreamResponse], Awaitable[None] | None]

# aiosite.security's check of a submitted CSRF token, for a battery that reads the request
# body itself (uploads): raises HTTPForbidden when the token is not this session's.
CsrfCheck = Callable[[web.Request, str | None], Awaitable[None]]
# A handler attribute: the handler reads its request body as a stream (file uploads), so
# nothing may read the body before it. On such a route the CSRF hook cannot read a form
# field; for a multipart body without the token header it sets CSRF_PENDING instead, and
# the body reader checks the form's first field with CSRF_CHECK before storing anything.
STREAMS_BODY = "aiosite_streams_body"
# A handler attribute: the core's answer to a request that matched no route (404, 405),
# which request hooks such as the CSRF check let through to keep its status.
NO_ROUTE = "aiosite_no_route"

SETTINGS: web.AppKey[Settings] = web.AppKey("aiosite.settings")
# The per-request core (request ids, finalizers, error pages) around every handler.
CORE: web.AppKey[Core] = web.AppKey("aiosite.core")
APPS: web.AppKey[AppRegistry] = web.AppKey("aiosite.apps")
TEMPLATES: web.AppKey[Templates] = web.AppKey("aiosite.templates")
STATIC_FILES: web.AppKey[StaticFiles] = web.AppKey("aiosite.static")
URLS: web.AppKey[UrlReverser] = web.AppKey("aiosite.urls")
ROUTES: web.AppKey[SiteRoutes] = web.AppKey("aiosite.routes")
BLOCK_DETECTOR: web.AppKey[BlockDetector] = web.AppKey("aiosite.block_detector")
DATABASE: web.AppKey[Database] = web.AppKey("aiosite.database")
SESSION_STORE: web.AppKey[SessionStore] = web.AppKey("aiosite.session_store")
CSRF_CHECK: web.AppKey[CsrfCheck] = web.AppKey("aiosite.csrf_check")
ERROR_TRANSLATORS: web.AppKey[list[ErrorTranslator]] = web.AppKey("aiosite.error_translators")
# The site's upload storage; a project may replace it in its setup hook (e.g. with a bucket).
UPLOAD_STORAGE: web.AppKey[Storage] = web.AppKey("aiosite.upload_storage")

REQUEST_ID: web.RequestKey[str] = web.RequestKey("aiosite.request_id")
# The request's database session, created by the first db_session(request) call.
DB_SESSION: web.RequestKey[AsyncSession] = web.RequestKey("aiosite.db_session")
# In the core's middleware mode, the request the handler was given: a middleware between
# the core and the handler may pass on a clone (``request.clone(remote=...)``), whose
# state is a shallow copy, so what the handler stored on it (the browser session) is
# read from there. A one-item list, shared by the clones.
HANDLED_REQUEST: web.RequestKey[list[web.Request]] = web.RequestKey("aiosite.handled_request")
CSRF_PENDING: web.RequestKey[bool] = web.RequestKey("aiosite.csrf_pending")
# The limits of the upload route a request is for, set by @accepts_uploads for the reader.
UPLOAD_LIMITS: web.RequestKey[ResolvedLimits] = web.RequestKey("aiosite.upload_limits")
REQUEST_FINALIZERS: web.RequestKey[list[RequestFinalizer]] = web.RequestKey(
    "aiosite.request_finalizers"
)


def state_of(target: web.Request | web.Application) -> Mapping[Any, Any]:
    """Where a site's keys are read: the request's application chain, or the application."""
    return target.config_dict if isinstance(target, web.Request) else target


def settings_of(target: web.Request | web.Application) -> Settings:
    """The site's settings, from a request or the application."""
    settings: Settings = state_of(target)[SETTINGS]
    return settings


def add_request_finalizer(request: web.Request, finalizer: RequestFinalizer) -> None:
    """Have the core call ``finalizer`` when the request's handler is done."""
    finalizers = request.get(REQUEST_FINALIZERS)
    if finalizers is None:
        request[REQUEST_FINALIZERS] = [finalizer]
    else:
        finalizers.append(finalizer)
