"""What a call to an upstream can fail with, and the status the site answers for each.

Each ``UpstreamError`` carries the service's name, a message fit for the site's visitor
(``str(exc)``), and for the log the request that failed (``method``, ``url``) and why
(``cause``). A handler that lets one escape answers with the site's error page for
``status`` (JSON on API routes), logged as one WARNING line.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

from yarl import URL

from aiosite.exceptions import AiositeError

if TYPE_CHECKING:
    from aiosite.http.response import UpstreamResponse


class UpstreamError(AiositeError):
    """A call to an upstream service failed; ``status`` is the site's answer."""

    status: ClassVar[int] = 502
    # Whether trying again soon may succeed (a refused connection may be a restart; a
    # certificate that does not verify will not verify in a second either).
    transient: bool = True

    def __init__(
        self,
        service: str,
        message: str,
        *,
        method: str | None = None,
        url: URL | str | None = None,
        cause: str | None = None,
        transient: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.service = service
        self.method = method
        self.url = None if url is None else loggable_url(URL(url))
        self.cause = cause
        if transient is not None:  # else the class's
            self.transient = transient

    @property
    def message(self) -> str:
        """What the site's visitor is told."""
        return str(self)

    def describe(self) -> str:
        """One line for the log: the service, the request and the cause."""
        request = f"{self.method} {self.url}" if self.method and self.url else "call"
        cause = self.cause or str(self)
        return f"service {self.service!r}: {request} failed: {cause}"

    def as_json(self) -> dict[str, object]:
        """``{"status": 502, "error": "..."}``: this error in a JSON answer."""
        return {"status": self.status, "error": self.message}


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer within the timeout or the caller's deadline: 504."""

    status = 504


class UpstreamUnavailable(UpstreamError):
    """No usable answer: the connection was refused or dropped, the host name did not
    resolve, TLS failed, or the response was malformed or too large: 502."""


class UpstreamStatusError(UpstreamError):
    """The upstream answered with an error status (a 5xx, after any retries; any error
    status from ``raise_for_status``): 502. ``upstream_status`` is its status."""

    def __init__(
        self,
        service: str,
        upstream_status: int,
        *,
        method: str | None = None,
        url: URL | str | None = None,
        retry_after: float | None = None,
        response: UpstreamResponse | None = None,
    ) -> None:
        super().__init__(
            service,
            f"The {service} service failed (HTTP {upstream_status}).",
            method=method,
            url=url,
            cause=f"HTTP {upstream_status}",
        )
        self.upstream_status = upstream_status
        # The upstream's Retry-After, in seconds, when it sent one.
        self.retry_after = retry_after
        # The upstream's answer itself (its error body).
        self.response = response


class CircuitOpen(UpstreamError):
    """The service's circuit breaker is open after repeated failures: the call failed at
    once, without touching the upstream: 503 with ``Retry-After``, the seconds until the
    breaker lets a call through again (the site knows when to ask again, so not 502)."""

    status = 503

    def __init__(self, service: str, retry_after: float) -> None:
        self.retry_after = max(0.0, retry_after)
        seconds = self.retry_after_header
        super().__init__(
            service,
            f"The {service} service is unavailable; try again in {seconds} "
            f"second{'' if seconds == '1' else 's'}.",
            cause=f"circuit breaker open for {self.retry_after:.1f} more seconds",
        )

    @property
    def retry_after_header(self) -> str:
        """Whole seconds, rounded up, at least 1: the ``Retry-After`` header's value."""
        return str(max(1, math.ceil(self.retry_after)))


class OutboundRequestBlocked(AiositeError):
    """A site built for tests (``http.outbound: loopback``) sent a request to a host
    that is not loopback; the message says how to register a fake upstream. Not an
    ``UpstreamError``: no handler or fan-out takes it for an upstream's failure."""


def loggable_url(url: URL) -> URL:
    """``url`` without its credentials, query and fragment: what may go into a log or
    an error (a query string often carries an API key)."""
    if url.is_absolute():
        url = url.with_user(None)
    return url.with_query(None).with_fragment(None)
