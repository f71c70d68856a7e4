"""The origin check of websockets: CSRF for websockets (cross-site websocket hijacking).

A browser sends the visitor's cookies with a websocket upgrade from any page, and the
same-origin policy does not apply to websockets: without this check, another site's page
could open a socket in the visitor's name and read what it says. A browser always names
the page's origin in ``Origin``; an upgrade from another site is refused with 403 before
it happens, unless that origin is the site's own, an allowed host's or a trusted one.

The site's own origin and ``security.csrf_trusted_origins`` are compared exactly (scheme,
host, port). A host of ``security.allowed_hosts`` vouches for its pages with any scheme
and port on a site served over HTTP (development: a front-end dev server on another
port), and only for its ``https`` pages on the default port when the request is HTTPS.

A request without ``Origin`` comes from no browser (a command-line or server client,
which holds no visitor's cookies unless given them) and is let through. ``Origin: null``
(a sandboxed frame, a ``file:`` page) is a browser's and is refused.
"""

from __future__ import annotations

import logging

from aiohttp import hdrs, web

from aiosite.keys import ORIGIN_CHECKED, WEBSOCKET
from aiosite.security.forwarded import ProxyTrust, request_is_https
from aiosite.security.hosts import host_matches
from aiosite.security.origins import TrustedOrigins, parse_origin, request_origin
from aiosite.settings import Settings

logger = logging.getLogger("aiosite.security")

_SHOWN_LENGTH = 100


def check_origin_enabled(settings: Settings) -> bool:
    """``websockets.check_origin``, read by name: the section belongs to the channels
    battery, which this one does not import (batteries do not import each other). A
    site without that section checks origins."""
    section = getattr(settings, "websockets", None)
    return bool(getattr(section, "check_origin", True))


def is_websocket_route(route: web.AbstractRoute) -> bool:
    """Whether ``route`` was mounted with ``routes.websocket`` (hooks' ``routes=``)."""
    return bool(getattr(route.handler, WEBSOCKET, False))


class WebSocketOrigin:
    """The check, as a request hook of websocket routes (``__call__``) and as the
    callable ``open_websocket`` runs on other routes (``check``)."""

    def __init__(self, settings: Settings) -> None:
        security = settings.security
        self.trusted = TrustedOrigins(security.csrf_trusted_origins)
        # "*" lets any Host header in; it vouches for no other site's pages.
        self.hosts = tuple(p.removesuffix(".") for p in security.allowed_hosts if p != "*")
        self.proxies = ProxyTrust(security)

    def __call__(self, request: web.Request) -> None:
        # Settled onto websocket routes only; a request no route matched, or a site whose
        # core runs as a middleware, calls every hook, hence the marker's check here.
        if getattr(request.match_info.handler, WEBSOCKET, False):
            self.check(request)

    def check(self, request: web.Request) -> None:
        """Raise HTTPForbidden for a browser's request from another site's page."""
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is not None and not self.allows(request, origin):
            shown = origin if len(origin) <= _SHOWN_LENGTH else origin[:_SHOWN_LENGTH] + "…"
            logger.warning(
                "Refused a websocket from another site (Origin: %s): %s %s",
                shown,
                request.method,
                request.path,
            )
            raise web.HTTPForbidden(
                text=(
                    "This websocket was refused because the page that opened it is on another "
                    f"site ({shown}). (Site owners: add that origin, scheme://host[:port], to "
                    "security.csrf_trusted_origins to accept it.)"
                )
            )
        request[ORIGIN_CHECKED] = True

    def allows(self, request: web.Request, origin: str) -> bool:
        sender = parse_origin(origin)
        if sender is None:  # "null", or no http(s) origin at all
            return False
        secure = request_is_https(request, self.proxies)
        if sender == request_origin(request.headers.get(hdrs.HOST, ""), secure=secure):
            return True
        if sender in self.trusted:
            return True
        scheme, host, port = sender
        if secure and (scheme != "https" or port != 443):
            # A page of an allowed host, on a site served over HTTPS: only that host's
            # HTTPS page counts, not one served in clear text or on another port (any
            # other service of that host) that could be made to open the socket.
            return False
        if ":" in host:  # parse_origin gives IPv6 without brackets; allowed_hosts has them
            host = f"[{host}]"
        return any(host_matches(host, pattern) for pattern in self.hosts)


def allow_every_origin(request: web.Request) -> None:
    """The check with ``websockets.check_origin: false``."""
    request[ORIGIN_CHECKED] = True
