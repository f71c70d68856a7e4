"""An upstream's answer, read whole: the connection is back in the pool before the
caller sees it, and a retry can look at the status. Its ``text()`` and ``json()`` are
plain methods (the body is already read, as in httpx), not awaited as aiohttp's are; a
body they cannot read is the upstream's failure, ``UpstreamUnavailable`` (502)."""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from multidict import CIMultiDictProxy
from yarl import URL

from aiosite.http.errors import UpstreamStatusError, UpstreamUnavailable, loggable_url

_loads: Callable[[bytes], Any]
try:
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - orjson is a default dependency
    _loads = json.loads


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    """The status, headers and whole body of an upstream's answer."""

    service: str
    method: str
    url: URL
    status: int
    reason: str
    headers: CIMultiDictProxy[str]
    body: bytes
    # The charset of its Content-Type, if it named one.
    charset: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the status is below 400."""
        return self.status < 400

    @property
    def content_type(self) -> str:
        """The media type of the body, without parameters (``application/json``)."""
        value = self.headers.get("Content-Type", "application/octet-stream")
        return value.partition(";")[0].strip().lower()

    def text(self, encoding: str | None = None, errors: str = "strict") -> str:
        """The body decoded: with ``encoding``, else the response's charset, else UTF-8.

        ``UpstreamUnavailable`` when it does not decode, or when the response names a
        charset Python does not know (an ``encoding`` of the caller's that Python does
        not know is the caller's LookupError)."""
        if encoding is not None:
            codecs.lookup(encoding)
        charset = encoding or self.charset or "utf-8"
        try:
            return self.body.decode(charset, errors)
        except LookupError:
            raise self._unreadable(
                "could not be read", f"unknown charset {charset[:40]!r}"
            ) from None
        except UnicodeDecodeError:
            raise self._unreadable(
                "could not be read", f"a body that is not {charset[:40]}"
            ) from None

    def json(self, *, loads: Callable[[bytes], Any] | None = None) -> Any:
        """The body parsed as JSON (orjson when installed), whatever the Content-Type
        says; ``UpstreamUnavailable`` when it is not JSON."""
        try:
            return (loads or _loads)(self.body)
        except ValueError:  # orjson's and json's JSONDecodeError, UnicodeDecodeError
            raise self._unreadable(
                "is not JSON", f"a {self.content_type[:60]} body that is not JSON"
            ) from None

    def _unreadable(self, what: str, cause: str) -> UpstreamUnavailable:
        # Not transient: the same answer would come again.
        return UpstreamUnavailable(
            self.service,
            f"The {self.service} service sent an answer that {what}.",
            cause=cause,
            transient=False,
            method=self.method,
            url=self.url,
        )

    def raise_for_status(self) -> None:
        """Raise ``UpstreamStatusError`` (the site answers 502) for a status of 400 or
        more: for a caller that has no use for the upstream's error answers."""
        if self.status >= 400:
            raise UpstreamStatusError(
                self.service, self.status, method=self.method, url=self.url, response=self
            )

    def __repr__(self) -> str:
        return (
            f"<UpstreamResponse {self.service} {self.method} {loggable_url(self.url)} "
            f"{self.status} "
            f"{len(self.body)} bytes>"
        )
