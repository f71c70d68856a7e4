"""Whether a request reached the site over HTTPS, directly or through a trusted proxy."""

from __future__ import annotations

from aiohttp import hdrs, web

from aiosite.keys import settings_of


def forwarded_https(request: web.Request) -> bool:
    """Whether the proxy in front says the client used HTTPS (``X-Forwarded-Proto``).

    A chain of proxies may list several values; the first is the one the client reached.
    """
    proto = request.headers.get(hdrs.X_FORWARDED_PROTO)
    if proto is None:
        return False
    return proto.partition(",")[0].strip().lower() == "https"


def is_secure(request: web.Request) -> bool:
    """Whether the client's connection to the site is HTTPS.

    True for a TLS connection to aiosite itself, or, when ``security.trust_proxy_headers``
    is on, for a request the proxy in front marks ``X-Forwarded-Proto: https``. The header
    is ignored otherwise: any client could send it.
    """
    if request.secure:
        return True
    return settings_of(request).security.trust_proxy_headers and forwarded_https(request)
