"""Calls to a named service: ``await service(request, "weather").get("/v1/today")``.

Each call is bounded by the service's timeouts, retried while that is safe (idempotent
methods, failures that may pass), passed through the service's circuit breaker, and
carries the incoming request's ``X-Request-ID``, so that the upstream's logs can be
matched with the site's. The answer is read whole, within ``http.max_response_size``
(counted decoded when it is compressed), and the connection goes back to the pool
before the caller sees it.

What goes into a log (an error's ``cause``, stamina's retry lines) never has the query
string, which often carries an API key: aiohttp errors whose message names the URL are
described by their type and the URL without its query.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import hdrs, web
from multidict import CIMultiDict
from yarl import URL

from aiosite.exceptions import one_line
from aiosite.http.client import http_client
from aiosite.http.errors import (
    CircuitOpen,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamUnavailable,
    loggable_url,
)
from aiosite.http.registry import SERVICES, Services, Upstream
from aiosite.http.response import UpstreamResponse
from aiosite.http.retry import IDEMPOTENT_METHODS, retry_after_seconds
from aiosite.keys import REQUEST_ID, REQUEST_ID_HEADER, state_of

_CHUNK = 64 * 1024
# aiohttp errors whose message names no URL: a host and port at most, or the reason the
# operating system gave.
_MESSAGE_WITHOUT_URL = (
    aiohttp.ClientOSError,  # ClientConnectorError, its DNS, proxy and TLS kinds too
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientPayloadError,
    aiohttp.ServerFingerprintMismatch,
)


@dataclass(slots=True, repr=False)
class _Call:
    """One request to send, once or again on a retry."""

    method: str
    url: URL
    headers: CIMultiDict[str] = field(repr=False)
    options: dict[str, Any] = field(repr=False)

    def __repr__(self) -> str:
        # What stamina logs with each retry: never the query string or the headers,
        # which may carry credentials.
        return f"<{self.method} {loggable_url(self.url)}>"


class Service:
    """A named upstream service, for calls made while handling one request (or by the
    site itself, when made from the application)."""

    __slots__ = ("_client", "_max_size", "_request_id", "_services", "_upstream")

    def __init__(
        self,
        upstream: Upstream,
        client: aiohttp.ClientSession,
        services: Services,
        request_id: str | None = None,
    ) -> None:
        self._upstream = upstream
        self._client = client
        self._services = services
        self._request_id = request_id
        self._max_size = services.settings.max_response_size

    @property
    def name(self) -> str:
        return self._upstream.name

    @property
    def base_url(self) -> URL:
        return self._upstream.base_url

    def url(self, path: str) -> URL:
        """The URL a call to ``path`` goes to."""
        return self._upstream.url(path)

    async def get(self, path: str, **options: Any) -> UpstreamResponse:
        return await self.request(hdrs.METH_GET, path, **options)

    async def head(self, path: str, **options: Any) -> UpstreamResponse:
        return await self.request(hdrs.METH_HEAD, path, **options)

    async def options(self, path: str, **options: Any) -> UpstreamResponse:
        return await self.request(hdrs.METH_OPTIONS, path, **options)

    async def post(self, path: str, **options: Any) -> UpstreamResponse:
        return await self.request(hdrs.METH_POST, path, **options)

    async def put(self, path: str, **options: Any) -> UpstreamResponse:
        return await self.request(hdrs.METH_PUT, path, **options)

    async def patch(self, path: str, **options: Any) -> UpstreamResponse:
        return await self.request(hdrs.METH_PATCH, path, **options)

    async def delete(self, path: str, **options: Any) -> UpstreamResponse:
        return await self.request(hdrs.METH_DELETE, path, **options)

    async def request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool | None = None,
        headers: Mapping[str, str] | None = None,
        **options: Any,
    ) -> UpstreamResponse:
        """Send ``method path`` (``options`` as for aiohttp's ``ClientSession.request``:
        ``params``, ``json``, ``data``, ``timeout``...) and read the whole answer.

        A status below 500 is returned, 4xx included. A 5xx, a timeout or a failed
        connection raises an ``UpstreamError`` once the retries are spent; the retries
        are for idempotent methods only, unless ``idempotent=True`` says the call is
        safe to repeat (``idempotent=False`` turns them off for a call).
        """
        method = method.upper()
        upstream = self._upstream
        url = upstream.url(path)
        options.setdefault("timeout", upstream.timeout)
        # The site's middlewares (a call's own replace a session's in aiohttp): the test
        # guard and the service's headers kept to its origin, then the caller's.
        options["middlewares"] = (*upstream.middlewares, *(options.get("middlewares") or ()))
        # No local holds the service's headers: a debug page shows the locals.
        call = _Call(method, url, self._headers(headers), options)
        retry = upstream.retry
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        if retry is not None and idempotent:
            return await retry.call(self._attempt, call)
        return await self._attempt(call)

    def _headers(self, headers: Mapping[str, str] | None) -> CIMultiDict[str]:
        sent = CIMultiDict(self._upstream.headers)
        if self._request_id is not None:
            sent[REQUEST_ID_HEADER] = self._request_id
        if headers:
            sent.update(headers)
        return sent

    async def _attempt(self, call: _Call) -> UpstreamResponse:
        breaker = self._upstream.breaker
        if breaker is None:
            return await self._send(call)
        try:
            return await self._services.breakers.call(self.name, breaker, self._send, call)
        except CircuitOpen as exc:
            exc.method, exc.url = call.method, loggable_url(call.url)  # for the log line
            raise

    async def _send(self, call: _Call) -> UpstreamResponse:
        """One attempt; an ``UpstreamError`` for a failure or a 5xx."""
        name = self.name
        method, url = call.method, call.url
        try:
            async with self._client.request(
                call.method, call.url, headers=call.headers, **call.options
            ) as resp:
                body = await _read(resp, self._max_size, call.method)
                response = UpstreamResponse(
                    service=name,
                    method=call.method,
                    url=resp.url,
                    status=resp.status,
                    reason=resp.reason or "",
                    headers=resp.headers,
                    body=body,
                    charset=resp.charset,
                )
        except TimeoutError as exc:
            raise UpstreamTimeout(
                name,
                f"The {name} service did not answer in time.",
                cause=_timeout_cause(exc, call.options.get("timeout")),
                method=method,
                url=url,
            ) from exc
        except _TooLarge as exc:
            raise UpstreamUnavailable(
                name,
                f"The {name} service sent an answer that is too large.",
                cause=f"response larger than http.max_response_size ({exc.limit} bytes)",
                transient=False,
                method=method,
                url=url,
            ) from None
        except aiohttp.RedirectClientError as exc:
            # The upstream redirected to something that is not an http(s) URL.
            raise UpstreamUnavailable(
                name,
                f"The {name} service sent an answer that could not be followed.",
                cause=f"{type(exc).__name__}: a redirect to a location that is not an http(s) URL",
                transient=False,
                method=method,
                url=url,
            ) from exc
        except aiohttp.InvalidURL:
            raise  # a URL of the caller's making, not the upstream's
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(
                name,
                f"The {name} service could not be reached.",
                cause=_cause(exc),
                # A TLS failure does not pass with a retry.
                transient=not isinstance(exc, aiohttp.ClientSSLError),
                method=method,
                url=url,
            ) from exc
        if response.status >= 500:
            raise UpstreamStatusError(
                name,
                response.status,
                method=method,
                url=url,
                retry_after=retry_after_seconds(response.headers.get(hdrs.RETRY_AFTER)),
                response=response,
            )
        return response


class _TooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


def _cause(exc: aiohttp.ClientError) -> str:
    """``exc`` in one line for the log, without a query string."""
    if isinstance(exc, _MESSAGE_WITHOUT_URL):
        return one_line(exc)
    if isinstance(exc, aiohttp.TooManyRedirects) and exc.history:
        return f"TooManyRedirects (the last from {loggable_url(exc.history[-1].url)})"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"{type(exc).__name__} (HTTP {exc.status}, {loggable_url(exc.request_info.url)})"
    return type(exc).__name__


def _timeout_cause(exc: TimeoutError, timeout: object) -> str:
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        # Its message has the whole URL.
        connect = timeout.sock_connect if isinstance(timeout, aiohttp.ClientTimeout) else None
        within = f"within {connect} s" if connect else "in time"
        return f"ConnectionTimeoutError: no connection {within}"
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return one_line(exc)
    total = timeout.total if isinstance(timeout, aiohttp.ClientTimeout) else timeout
    return f"no complete answer within {total} s"


async def _read(resp: aiohttp.ClientResponse, limit: int, method: str) -> bytes:
    """The whole body, refused beyond ``limit`` bytes."""
    if method == hdrs.METH_HEAD:
        return await resp.read()
    length = resp.content_length
    # Content-Length counts the bytes sent: compressed ones when the body has a
    # Content-Encoding, which aiohttp decodes as it reads. Then only the decoded bytes
    # say how large the body is (a gzip bomb: a kilobyte that decodes to gigabytes).
    encoding = resp.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower()
    if length is not None and encoding in ("", "identity"):
        if length > limit:
            raise _TooLarge(limit)
        return await resp.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise _TooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def service(target: web.Request | web.Application, name: str) -> Service:
    """The service ``name`` of the site's ``http.services`` settings.

    From a request, its calls carry the request's ``X-Request-ID``. An unknown name
    raises ImproperlyConfigured naming the services there are; before the site has
    started (or after it stopped) RuntimeError, as for ``http_client``.
    """
    state = state_of(target)
    services: Services | None = state.get(SERVICES)
    if services is None:
        raise RuntimeError(
            "this application has no aiosite.http battery; build it with aiosite's "
            "create_site (or load_site)"
        )
    upstream = services.get(name)
    request_id = target.get(REQUEST_ID) if isinstance(target, web.Request) else None
    return Service(upstream, http_client(target), services, request_id)
