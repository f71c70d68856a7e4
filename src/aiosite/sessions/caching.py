"""Cache headers for pages that depend on the visitor's browser session.

A shared cache (a CDN, a proxy) must never hand one visitor's page (a name, a CSRF token,
a flash message) to another, and a browser must not keep a signed-in user's pages on
disk. A response that read the session gets ``Vary: Cookie`` and a ``Cache-Control``;
pages that never touched it stay cacheable.
"""

from __future__ import annotations

from aiohttp import hdrs, web
from aiohttp_session import Session

from aiosite.sessions.config import SessionSettings

COOKIE = "Cookie"


class PersonalCacheHeaders:
    """What the sessions battery's response hook adds to a response that read the session."""

    def __init__(self, settings: SessionSettings) -> None:
        self.without_data = settings.cache_control_without_data or None
        self.with_data = settings.cache_control_with_data or None

    def apply(self, response: web.StreamResponse, session: Session) -> None:
        headers = response.headers
        vary = headers.get(hdrs.VARY)
        if vary is None:
            headers[hdrs.VARY] = COOKIE
        elif not _varies_on_cookie(vary):
            headers[hdrs.VARY] = f"{vary}, {COOKIE}"
        if hdrs.CACHE_CONTROL not in headers:  # the handler's own choice wins
            value = self.without_data if session.empty else self.with_data
            if value is not None:
                headers[hdrs.CACHE_CONTROL] = value


def _varies_on_cookie(vary: str) -> bool:
    return any(part.strip().lower() in ("cookie", "*") for part in vary.split(","))
