"""The CSRF cookie: where the CSRF secret of a visitor whose session holds nothing lives.

Putting that secret in the session would store a session (a Redis key, a session cookie)
for every anonymous view of a page with a form; a cookie of its own stores nothing on
the server, as Django's default does. The cookie is written onto the response by the
sessions battery's response hook (``aiosite.keys.VISITOR_COOKIES``), since the secret is
made while the page renders, before the response exists.

A Secure CSRF cookie (the default outside development and test) is named with the
``__Host-`` prefix (``__Host-aiosite_csrf``): browsers accept a cookie of that name only
from this very host over HTTPS, with ``Path=/`` and no ``Domain``, so a sibling subdomain
or a plain-HTTP man-in-the-middle cannot plant one.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from aiosite.keys import VISITOR_COOKIES, CookieWriter
from aiosite.settings import Settings

# A year, as Django's: a form left open in a tab for days still posts.
MAX_AGE = 365 * 24 * 3600
PATH = "/"
SAMESITE = "Lax"
HOST_PREFIX = "__Host-"


@dataclass(frozen=True, slots=True)
class CsrfCookie:
    """The name and flags of the site's CSRF cookie (``security.csrf_cookie_*``)."""

    name: str
    secure: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> CsrfCookie:
        security = settings.security
        secure = settings.secure_cookie(security.csrf_cookie_secure)
        name = security.csrf_cookie_name
        if secure and not name.startswith(HOST_PREFIX):
            # Path=/ and no Domain already: the prefix only makes browsers enforce them.
            name = HOST_PREFIX + name
        return cls(name, secure)

    def value(self, request: web.Request) -> str | None:
        return request.cookies.get(self.name)

    def write_later(self, request: web.Request, value: str) -> None:
        """Set the cookie to ``value`` on the request's response."""

        def write(response: web.StreamResponse) -> None:
            response.set_cookie(
                self.name,
                value,
                max_age=MAX_AGE,
                path=PATH,
                secure=self.secure,
                httponly=True,
                samesite=SAMESITE,
            )

        _later(request, write)

    def delete_later(self, request: web.Request) -> None:
        """Delete the cookie with the request's response."""

        def delete(response: web.StreamResponse) -> None:
            response.del_cookie(
                self.name, path=PATH, secure=self.secure, httponly=True, samesite=SAMESITE
            )

        _later(request, delete)


def _later(request: web.Request, writer: CookieWriter) -> None:
    writers = request.get(VISITOR_COOKIES)
    if writers is None:
        request[VISITOR_COOKIES] = [writer]
    else:
        writers.append(writer)


CSRF_COOKIE: web.AppKey[CsrfCookie] = web.AppKey("aiosite.csrf_cookie", CsrfCookie)
