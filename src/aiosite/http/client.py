"""The site's one outbound ``aiohttp.ClientSession``: made when the site starts, closed
when it stops, with the connection limits and timeouts of the ``http:`` settings."""

from __future__ import annotations

from collections.abc import Sequence

import aiohttp
from aiohttp import ClientMiddlewareType, web
from aiohttp.typedefs import JSONBytesEncoder

from aiosite.http.config import HttpSettings
from aiosite.keys import state_of

HTTP_CLIENT: web.AppKey[aiohttp.ClientSession] = web.AppKey(
    "aiosite.http_client", aiohttp.ClientSession
)


def make_client(
    settings: HttpSettings, middlewares: Sequence[ClientMiddlewareType] = ()
) -> aiohttp.ClientSession:
    """A client session with the site's limits, timeouts, User-Agent and middlewares
    (the test guard)."""
    connector = aiohttp.TCPConnector(limit=settings.limit, limit_per_host=settings.limit_per_host)
    timeout = aiohttp.ClientTimeout(
        total=settings.timeout.total, sock_connect=settings.timeout.connect
    )
    serialize: JSONBytesEncoder | None = None
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson is a default dependency
        pass
    else:
        serialize = orjson.dumps
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        headers={"User-Agent": settings.user_agent},
        # One session serves every visitor: a cookie an upstream set while serving one
        # must never go out with another's request.
        cookie_jar=aiohttp.DummyCookieJar(),
        middlewares=tuple(middlewares),
        json_serialize_bytes=serialize,
    )


def http_client(target: web.Request | web.Application) -> aiohttp.ClientSession:
    """The site's outbound client session, from a request or the application.

    Use it for what named services do not fit (streaming a large download); it has the
    site's limits and timeouts, but no retries or circuit breaker (``service()``). Pass
    it to an SDK that takes a session, so that the SDK's calls share the site's pool
    and, in tests, its guard. A call's own ``middlewares=`` replaces the session's, the
    guard included: aiohttp runs one or the other.
    """
    client: aiohttp.ClientSession | None = state_of(target).get(HTTP_CLIENT)
    if client is None:
        raise RuntimeError(
            "the site's HTTP client is made when the site starts: use http_client() and "
            "service() in handlers, or in startup code that runs after aiosite.http's "
            "(an on_startup handler, a cleanup_ctx added in an app's setup)"
        )
    if client.closed:
        raise RuntimeError("the site's HTTP client is closed: the site has stopped")
    return client
