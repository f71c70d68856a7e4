"""Security defaults: allowed hosts, security headers and CSRF, as hooks of the core;
the secret-key policy.

The request hooks are named ``aiosite.allowed_hosts`` (first of all), ``aiosite.body_size``
(next: a body declared too large is refused before it is read) and ``aiosite.csrf``
(after ``aiosite.sessions``, whose session it reads), and ``aiosite.websocket_origin``
on websocket routes only (before the session is read: a refused upgrade loads nothing);
the response hook ``aiosite.security_headers``.
"""

from __future__ import annotations

from aiohttp import web

from aiosite.apps import AppRegistry
from aiosite.battery import Battery
from aiosite.hooks import hooks_of
from aiosite.keys import CLIENT_ADDRESS, CSRF_CHECK, TEMPLATE_GLOBALS, WEBSOCKET_ORIGIN_CHECK
from aiosite.security.body_size import BodySizeLimit, max_body_size
from aiosite.security.csrf_check import SAFE_METHODS, CsrfGuard, check_streamed_token
from aiosite.security.csrf_cookie import CSRF_COOKIE, CsrfCookie
from aiosite.security.csrf_tokens import (
    csrf_input_global,
    csrf_token_global,
    get_csrf_token,
    rotate_csrf_token,
)
from aiosite.security.forwarded import client_address, is_secure
from aiosite.security.headers import headers_hook
from aiosite.security.hosts import AllowedHosts, checks_host
from aiosite.security.route_traits import csrf_exempt
from aiosite.security.secret_key import (
    refuse_public_site_without_secret_key,
    secret_key_problem,
    secret_key_problems,
)
from aiosite.security.websocket_origin import (
    WebSocketOrigin,
    allow_every_origin,
    check_origin_enabled,
    is_websocket_route,
)
from aiosite.settings import Settings


def _attach(app: web.Application, settings: Settings, registry: AppRegistry) -> None:
    hooks = hooks_of(app)
    app[CSRF_COOKIE] = CsrfCookie.from_settings(settings)
    # First of all: a refused host costs nothing else. Routes marked PROBE (the
    # health checks a load balancer sends by IP address) answer any Host.
    hooks.add_request_hook(
        AllowedHosts(settings.security.allowed_hosts, debug=settings.debug.enabled),
        name="aiosite.allowed_hosts",
        before="*",
        routes=checks_host,
    )
    # Then, before anything reads a session: a declared body over the limit.
    hooks.add_request_hook(
        BodySizeLimit(settings.server.client_max_size), name="aiosite.body_size", before="*"
    )
    # The CSRF check reads the session the sessions hook attaches; a route that answers
    # only safe methods (GET, HEAD) never runs it.
    hooks.add_request_hook(
        CsrfGuard(settings),
        name="aiosite.csrf",
        after="aiosite.sessions",
        routes=lambda route: route.method not in SAFE_METHODS,
    )
    hooks.add_response_hook(headers_hook(settings), name="aiosite.security_headers")
    app[CSRF_CHECK] = check_streamed_token
    app[CLIENT_ADDRESS] = client_address
    # Cross-site websocket hijacking: a browser's upgrade from another site's page gets
    # 403. A hook of websocket routes only; open_websocket runs the same check on a route
    # added to the router directly, which carries no marker.
    if check_origin_enabled(settings):
        origin = WebSocketOrigin(settings)
        hooks.add_request_hook(
            origin,
            name="aiosite.websocket_origin",
            before="aiosite.sessions",
            routes=is_websocket_route,
        )
        app[WEBSOCKET_ORIGIN_CHECK] = origin.check
    else:
        app[WEBSOCKET_ORIGIN_CHECK] = allow_every_origin
    template_globals = app.get(TEMPLATE_GLOBALS)
    if template_globals is not None:
        template_globals.update(csrf_token=csrf_token_global, csrf_input=csrf_input_global)


battery = Battery("aiosite.security", _attach)
setup = battery.setup


__all__ = [
    "client_address",
    "csrf_exempt",
    "get_csrf_token",
    "is_secure",
    "max_body_size",
    "refuse_public_site_without_secret_key",
    "rotate_csrf_token",
    "secret_key_problem",
    "secret_key_problems",
    "setup",
]
