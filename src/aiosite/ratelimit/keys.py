"""What a rate limit counts requests under: the client's address, or a key of the site's
own (the signed-in user: ``aiosite.contrib.auth.by_user_or_address``)."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable

from aiohttp import web

from aiosite.security import client_address

# The key a request is counted under; None exempts the request from the limit. May be
# async (a key that loads the user).
RateLimitKey = Callable[[web.Request], Awaitable[str | None] | str | None]

UNKNOWN_ADDRESS = "unknown"
# One IPv6 subscriber usually holds a whole /64: limiting its single addresses would let
# it rotate through 2**64 of them.
_IPV6_PREFIX = 64


def by_address(request: web.Request) -> str:
    """``address:<ip>``: the client's address (``aiosite.client_address``, so behind a
    trusted proxy the address the proxy saw); an IPv6 client's /64 network."""
    address = client_address(request)
    if not address:
        return f"address:{UNKNOWN_ADDRESS}"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:  # not an IP (a unix socket's peer): as it is, bounded
        return f"address:{address[:64]}"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"address:{ip.ipv4_mapped}"
        return f"address:{ipaddress.ip_network((ip, _IPV6_PREFIX), strict=False)}"
    return f"address:{ip}"
