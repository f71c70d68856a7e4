"""What the proxy in front tells about the client (HTTPS, its address), when trusted.

Its ``X-Forwarded-Proto`` and ``X-Forwarded-For`` are believed only with
``security.trust_proxy_headers`` on, and only from a peer in ``security.trusted_proxies``
(or on a unix socket, which only processes of this machine reach): any client that
reaches the site directly could send those headers too.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network

from aiohttp import hdrs, web

from aiosite.keys import settings_of
from aiosite.networks import address_in
from aiosite.settings import SecuritySettings


class ProxyTrust:
    """Whose forwarded headers a site believes: read from ``security`` once, at setup."""

    __slots__ = ("enabled", "networks")

    def __init__(self, security: SecuritySettings) -> None:
        self.enabled = security.trust_proxy_headers
        self.networks: tuple[IPv4Network | IPv6Network, ...] = tuple(security.trusted_proxies)

    def trusts(self, request: web.Request) -> bool:
        """Whether ``request`` came from a trusted proxy (always false when disabled)."""
        return self.enabled and peer_is_trusted(request.remote, self.networks)


def peer_is_trusted(remote: str | None, networks: Sequence[IPv4Network | IPv6Network]) -> bool:
    """Whether the peer ``remote`` (``request.remote``) is in ``networks``; a unix
    socket's peer (no address) is."""
    return not remote or address_in(remote, networks)


def forwarded_https(request: web.Request) -> bool:
    """Whether the proxy in front says the client used HTTPS (``X-Forwarded-Proto``).

    A chain of proxies may list several values; the first is the one the client reached.
    Whether to believe it is the caller's to decide (``ProxyTrust``).
    """
    proto = request.headers.get(hdrs.X_FORWARDED_PROTO)
    if proto is None:
        return False
    return proto.partition(",")[0].strip().lower() == "https"


def request_is_https(request: web.Request, proxies: ProxyTrust) -> bool:
    """``is_secure`` for a hook that made its ``ProxyTrust`` at setup."""
    if request.secure:
        return True
    # The header first: most requests have none, and then the peer is never parsed.
    return proxies.enabled and forwarded_https(request) and proxies.trusts(request)


def is_secure(request: web.Request) -> bool:
    """Whether the client's connection to the site is HTTPS.

    True for a TLS connection to aiosite itself, or, when ``security.trust_proxy_headers``
    is on, for a request a trusted proxy (``security.trusted_proxies``) marks
    ``X-Forwarded-Proto: https``. The header is ignored otherwise: any client could send it.
    """
    return request_is_https(request, ProxyTrust(settings_of(request).security))


def client_address(request: web.Request) -> str | None:
    """The client's IP address: ``request.remote``, or, when
    ``security.trust_proxy_headers`` is on and the peer is a trusted proxy
    (``security.trusted_proxies``), the address that proxy saw (the last entry of
    ``X-Forwarded-For``, which nginx's ``$proxy_add_x_forwarded_for`` appends; entries
    before it are what the client claimed and are not trusted)."""
    security = settings_of(request).security
    if security.trust_proxy_headers:
        # Every header line: a proxy may add a line of its own rather than append to the
        # client's, and the last entry of the last line is the one it vouches for.
        forwarded = request.headers.getall(hdrs.X_FORWARDED_FOR, ())
        if forwarded and peer_is_trusted(request.remote, security.trusted_proxies):
            last = forwarded[-1].rpartition(",")[2].strip()
            if last:
                return last
    return request.remote
