"""What the site's client checks on every hop of a request, redirects included.

Two client middlewares (aiohttp runs a session's middlewares once per hop, with the
URL that hop goes to, however the redirect named it: ``Location`` or ``URI``):

- the test guard (``http.outbound: loopback``): the site's client sends nothing beyond
  this machine, so a test that forgot to fake an upstream fails at once, saying how to
  fake it, instead of calling a real service (or hanging on a network that is not
  there). It checks the URL itself rather than resolving names: a resolver is never
  asked about an IP address (``http://93.184.215.14/``). A proxy that is not loopback is
  refused too.
- a service's own headers (its API key) go to its own origin only: a redirect to another
  scheme, host or port gets the request without them.

The guard covers what the site's client sends (``http_client``, ``service``,
``gather_upstreams``), not a client session or an SDK of the user's own making.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

import aiohttp
from aiohttp import ClientHandlerType, ClientMiddlewareType, hdrs
from yarl import URL

from aiosite.http.errors import OutboundRequestBlocked, loggable_url

Origin = tuple[str, str | None, int | None]


def origin_of(url: URL) -> Origin:
    """Scheme, host and port (the default port when the URL names none)."""
    return url.scheme, url.host, url.port


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` is this machine: ``localhost``, 127.0.0.0/8, ::1 (or 127.0.0.1
    mapped into IPv6, ``::ffff:127.0.0.1``). Not ``*.localhost`` nor ``localhost.``,
    which a resolver may send elsewhere."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def outbound_guard(services: Callable[[], Iterable[tuple[str, str]]]) -> ClientMiddlewareType:
    """A client middleware that refuses each hop to a host (or through a proxy) that is
    not loopback, before it connects.

    ``services`` gives the configured (name, base URL) pairs, to name the service a
    blocked URL belongs to in the message.
    """

    async def guard(
        request: aiohttp.ClientRequest, handler: ClientHandlerType
    ) -> aiohttp.ClientResponse:
        if not is_loopback(request.url.host):
            raise OutboundRequestBlocked(_message(request.method, request.url, services()))
        proxy = request.proxy
        if proxy is not None and not is_loopback(proxy.host):
            raise OutboundRequestBlocked(
                f"outbound request blocked: {request.method} {loggable_url(request.url)} "
                f"goes through the proxy {loggable_url(proxy)}, which is not loopback, and "
                "this site was built for tests (http.outbound: loopback). Leave proxy= out "
                "in tests, or run the proxy on loopback."
            )
        return await handler(request)

    return guard


def own_headers_stay_home(origin: URL, names: Iterable[str]) -> ClientMiddlewareType:
    """A client middleware that drops the headers ``names`` (a service's own: its API
    key) from every hop that leaves ``origin``. aiohttp drops only Authorization and
    Cookie on such a redirect."""
    home = origin_of(origin)
    dropped = frozenset(name.lower() for name in names) - {hdrs.HOST.lower()}

    async def keep_home(
        request: aiohttp.ClientRequest, handler: ClientHandlerType
    ) -> aiohttp.ClientResponse:
        if origin_of(request.url) != home:
            for name in dropped:
                request.headers.popall(name, None)
        return await handler(request)

    return keep_home


def _message(method: str, url: URL, services: Iterable[tuple[str, str]]) -> str:
    owner = next((name for name, base in services if URL(base).host == url.host), None)
    name = owner or "weather"
    which = f" (the base URL of the service {owner!r})" if owner else ""
    return (
        f"outbound request blocked: {method} {loggable_url(url)}{which} goes to a host "
        "that is not loopback, and this site was built for tests (http.outbound: "
        "loopback). Fake the upstream in the test: `async with "
        f'aiosite.testing.fake_upstream(site, "{name}", handler_or_app):` serves the '
        f"service {name!r} from a local server for the test's duration; a call that does "
        "not go through service() can use the fake's URL (fake.url)."
    )
