"""What the proxy in front tells about the client (HTTPS, its address), when trusted."""

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


def request_is_https(request: web.Request, *, trust_proxy: bool) -> bool:
    """``is_secure`` for a hook that read ``security.trust_proxy_headers`` at setup."""
    return request.secure or (trust_proxy and forwarded_https(request))


def is_secure(request: web.Request) -> bool:
    """Whether the client's connection to the site is HTTPS.

    True for a TLS connection to aiosite itself, or, when ``security.trust_proxy_headers``
    is on, for a request the proxy in front marks ``X-Forwarded-Proto: https``. The header
    is ignored otherwise: any client could send it.
    """
    return request_is_https(request, trust_proxy=settings_of(request).security.trust_proxy_headers)


def client_address(request: web.Request) -> str | None:
    """The client's IP address: ``request.remote``, or, when
    ``security.trust_proxy_headers`` is on, the address the proxy in front saw (the last
    entry of ``X-Forwarded-For``, which nginx's ``$proxy_add_x_forwarded_for`` appends;
    entries before it are what the client claimed and are not trusted)."""
    if settings_of(request).security.trust_proxy_headers:
        # Every header line: a proxy may add a line of its own rather than append to the
        # client's, and the last entry of the last line is the one it vouches for.
        forwarded = request.headers.getall(hdrs.X_FORWARDED_FOR, ())
        if forwarded:
            last = forwarded[-1].rpartition(",")[2].strip()
            if last:
                return last
    return request.remote
