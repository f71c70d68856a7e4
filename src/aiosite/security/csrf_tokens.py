"""CSRF tokens tied to the visitor's browser.

Each visitor has one random secret; each rendered token is that secret masked with a
fresh random pad (as Django does), so the token in a page changes on every render and
compression side channels (BREACH) cannot recover it.

Where the secret lives depends on the session. While the session is empty (an anonymous
visitor who only reads pages and forms), the secret is in the CSRF cookie
(``security.csrf_cookie_name``), so that such a visitor's form page stores no session.
Once the session holds data (a signed-in user, a flash message), only the session's own
secret (``_csrf``) counts: the cookie can be set by others (a sibling subdomain, a
man-in-the-middle on plain HTTP), and a secret planted there must not carry over into a
session that holds something worth forging requests for. Such a session without a secret
gets a new one in the session when a token is rendered, and the CSRF cookie is deleted;
a form rendered while the session was empty is refused after that (the "reload" 403).
``rotate_csrf_token`` (at login) puts a new secret in the session and deletes the cookie.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from typing import Any

import aiohttp_session
import jinja2
from aiohttp import web
from markupsafe import Markup

from aiosite.security.csrf_cookie import CSRF_COOKIE, CsrfCookie

# The form field and the header a token is accepted from.
FIELD_NAME = "csrf_token"
HEADER_NAME = "X-CSRF-Token"
SESSION_FIELD = "_csrf"
_SECRET_BYTES = 32
# The CSRF cookie's secret as this request knows it: read from the cookie, or made for it.
_COOKIE_SECRET: web.RequestKey[bytes] = web.RequestKey("aiosite.csrf_cookie_secret", bytes)


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _decode(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return None


def mask(secret: bytes) -> str:
    pad = secrets.token_bytes(len(secret))
    return _encode(pad + bytes(a ^ b for a, b in zip(pad, secret, strict=True)))


def unmask(token: str) -> bytes | None:
    raw = _decode(token)
    if raw is None or len(raw) != 2 * _SECRET_BYTES:
        return None
    pad, masked = raw[:_SECRET_BYTES], raw[_SECRET_BYTES:]
    return bytes(a ^ b for a, b in zip(pad, masked, strict=True))


def _secret(value: object) -> bytes | None:
    secret = _decode(value) if isinstance(value, str) else None
    return secret if secret is not None and len(secret) == _SECRET_BYTES else None


async def csrf_secret(request: web.Request, *, create: bool) -> bytes | None:
    """The visitor's CSRF secret: the session's; for an empty session, the CSRF
    cookie's. Made when ``create`` and there is none: in the session if it holds data
    (deleting the CSRF cookie), else in the cookie.

    The session is loaded first in every case, which is what has the sessions battery
    write the cookie and mark the response personal (``Vary: Cookie``).
    """
    session = await aiohttp_session.get_session(request)
    secret = _secret(session.get(SESSION_FIELD))
    if secret is not None:
        return secret
    cookie = request.config_dict[CSRF_COOKIE]
    if not session.empty:
        # The cookie's secret is not trusted here: whoever could set the cookie would
        # know the tokens of this session (e.g. a logged-in one).
        if not create:
            return None
        secret = secrets.token_bytes(_SECRET_BYTES)
        session[SESSION_FIELD] = _encode(secret)
        _retire_cookie(request, cookie)
        return secret
    known: bytes | None = request.get(_COOKIE_SECRET)
    if known is not None:
        return known
    secret = _secret(cookie.value(request))
    if secret is None and create:
        secret = secrets.token_bytes(_SECRET_BYTES)
        cookie.write_later(request, _encode(secret))
    if secret is not None:
        request[_COOKIE_SECRET] = secret
    return secret


async def get_csrf_token(request: web.Request) -> str:
    """A token for a form or a JavaScript client of this visitor (a new mask each call)."""
    secret = await csrf_secret(request, create=True)
    return mask(secret or b"")


async def rotate_csrf_token(request: web.Request) -> None:
    """Retire the visitor's CSRF secret; pages rendered from now on carry a new one.

    Call it when the user's privileges change (at login, with ``rotate_session``), so a
    token that leaked before cannot be used after; forms rendered before it are refused.
    The new secret is kept in the session, and the CSRF cookie is deleted: a cookie
    planted before the login (by a sibling subdomain, say) is worth nothing after it.
    """
    session = await aiohttp_session.get_session(request)
    session[SESSION_FIELD] = _encode(secrets.token_bytes(_SECRET_BYTES))
    _retire_cookie(request, request.config_dict[CSRF_COOKIE])


def _retire_cookie(request: web.Request, cookie: CsrfCookie) -> None:
    """Delete the CSRF cookie the browser sent or this request set: the secret now lives
    in the session."""
    if cookie.value(request) is not None or request.get(_COOKIE_SECRET) is not None:
        cookie.delete_later(request)


def token_matches(secret: bytes, token: str) -> bool:
    """Whether ``token`` is ``secret`` under some mask (in constant time)."""
    submitted = unmask(token)
    return submitted is not None and hmac.compare_digest(secret, submitted)


@jinja2.pass_context
async def csrf_token_global(ctx: Any) -> str:
    """``{{ csrf_token() }}`` in templates, e.g. for a ``<meta>`` tag JavaScript reads."""
    request = ctx["request"]
    if aiohttp_session.STORAGE_KEY not in request:
        # A page answered before the session was attached (a refused Host): it has no
        # session, hence no token; its error page must still render.
        return ""
    return await get_csrf_token(request)


@jinja2.pass_context
async def csrf_input_global(ctx: Any) -> Markup:
    """``{{ csrf_input() }}``: the hidden field every POST form carries."""
    token = await csrf_token_global(ctx)
    return Markup('<input type="hidden" name="{}" value="{}">').format(FIELD_NAME, token)
