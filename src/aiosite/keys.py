"""The keys batteries share: the settings, the request id, and what one battery leaves for
another (the CSRF check a body reader calls, the markers a handler carries).

State hangs on the application (``web.AppKey``) or on the request (``web.RequestKey``),
never in module globals, so two sites can live in one process. A key whose value is one
battery's own class lives with that battery (``aiosite.db.engine.DATABASE``); only keys
typed by what every layer may import are here, so nothing here imports a battery.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from aiohttp import web
from multidict import istr

from aiosite.settings import Settings

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
# A handler attribute: the endpoint of a ``routes.websocket`` route, set when it is
# mounted. The security battery's origin check runs only on routes that carry it.
WEBSOCKET = "aiosite_websocket"
# A handler attribute: a health or metrics endpoint (``/healthz``, ``/readyz``,
# ``/metrics``). It answers whatever the Host header says (a load balancer probes by IP
# address): the allowed-hosts check leaves it alone; and the site-wide ``budgets:``
# defaults never shed it (a ``@budget`` of its own still applies).
PROBE = "aiosite_probe"
# A handler attribute: the site-wide ``budgets:`` defaults do not apply to the route (the
# static files: a large file to a slow client takes its time, and files must not queue
# behind a page's concurrency limit); a ``@budget`` of its own still does.
NO_SITE_BUDGET = "aiosite_no_site_budget"
# A handler attribute: the largest request body the route accepts, in bytes (None: any
# size), set by ``max_body_size`` and ``budget(max_body_size=)``; the security battery's
# body size hook refuses a larger declared body with 413 before reading it.
MAX_BODY_SIZE = "aiosite_max_body_size"

# aiosite.security's check of a websocket's Origin (cross-site websocket hijacking): raises
# HTTPForbidden for a browser's upgrade from another site. The security battery runs it as
# a request hook on ``routes.websocket`` routes; ``open_websocket`` calls it on a route
# that did not (one added with ``app.router.add_get``).
OriginCheck = Callable[[web.Request], None]

# The client's IP address as the security battery sees it (``X-Forwarded-For`` from a
# trusted proxy, else the peer's), for a battery that must not import it (the metrics
# battery's ``metrics.allow``); None when unknown (a unix socket peer).
ClientAddress = Callable[[web.Request], str | None]

# Writes a cookie onto the response. A battery that keeps something in the visitor's
# browser beside the session (the CSRF cookie of a visitor whose session holds nothing)
# appends one to the request's VISITOR_COOKIES once it has loaded the session; the
# sessions battery's response hook, which runs for every request that loaded its session,
# calls them with the session's own cookie, so requests that never did pay nothing.
CookieWriter = Callable[[web.StreamResponse], None]

SETTINGS: web.AppKey[Settings] = web.AppKey("aiosite.settings", Settings)
CSRF_CHECK: web.AppKey[CsrfCheck] = web.AppKey("aiosite.csrf_check")
WEBSOCKET_ORIGIN_CHECK: web.AppKey[OriginCheck] = web.AppKey("aiosite.websocket_origin_check")
CLIENT_ADDRESS: web.AppKey[ClientAddress] = web.AppKey("aiosite.client_address")
# The globals of the site's Jinja2 environment, for batteries that add template helpers
# (csrf_input, flashed_messages); set by the templates battery, which is set up first.
TEMPLATE_GLOBALS: web.AppKey[MutableMapping[str, Any]] = web.AppKey("aiosite.template_globals")

# The header that carries a request's id: read from and answered by aiosite.web, set on
# the upgrade of a websocket or event stream by aiosite.channels, passed on to upstreams
# by aiosite.http. An istr: looked up without case-folding on every request.
REQUEST_ID_HEADER = istr("X-Request-ID")
REQUEST_ID: web.RequestKey[str] = web.RequestKey("aiosite.request_id", str)
CSRF_PENDING: web.RequestKey[bool] = web.RequestKey("aiosite.csrf_pending", bool)
# Set once the websocket origin check has passed for the request.
ORIGIN_CHECKED: web.RequestKey[bool] = web.RequestKey("aiosite.origin_checked", bool)
VISITOR_COOKIES: web.RequestKey[list[CookieWriter]] = web.RequestKey(
    "aiosite.visitor_cookies", list
)
# The deadline of a handler under a budget's timeout (aiosite.budgets). A websocket or an
# event stream lifts it once it is open (aiosite.channels): the timeout bounds the time
# to open it, not its life.
BUDGET_DEADLINE: web.RequestKey[asyncio.Timeout] = web.RequestKey(
    "aiosite.budget_deadline", asyncio.Timeout
)


def state_of(target: web.Request | web.Application) -> Mapping[Any, Any]:
    """Where a site's keys are read: the request's application chain, or the application."""
    return target.config_dict if isinstance(target, web.Request) else target


def settings_of(target: web.Request | web.Application) -> Settings:
    """The site's settings, from a request or the application."""
    settings: Settings = state_of(target)[SETTINGS]
    return settings
