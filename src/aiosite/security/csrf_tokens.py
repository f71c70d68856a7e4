"""CSRF tokens tied to the browser session.

The session holds one random secret; each rendered token is that secret masked with a
fresh random pad (as Django does), so the token in a page changes on every render and
compression side channels (BREACH) cannot recover it.
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

# The form field and the header a token is accepted from.
FIELD_NAME = "csrf_token"
HEADER_NAME = "X-CSRF-Token"
SESSION_FIELD = "_csrf"
_SECRET_BYTES = 32


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


async def session_secret(request: web.Request, *, create: bool) -> bytes | None:
    """The session's CSRF secret, made (and saved with the session) when ``create``."""
    session = await aiohttp_session.get_session(request)
    stored = session.get(SESSION_FIELD)
    secret = _decode(stored) if isinstance(stored, str) else None
    if secret is not None and len(secret) == _SECRET_BYTES:
        return secret
    if not create:
        return None
    secret = secrets.token_bytes(_SECRET_BYTES)
    session[SESSION_FIELD] = _encode(secret)
    return secret


async def get_csrf_token(request: web.Request) -> str:
    """A token for a form or a JavaScript client of this session (a new mask each call)."""
    secret = await session_secret(request, create=True)
    return mask(secret or b"")


async def rotate_csrf_token(request: web.Request) -> None:
    """Retire the session's CSRF secret; pages rendered from now on carry a new one.

    Call it when the user's privileges change (at login, with ``rotate_session``), so a
    token that leaked before cannot be used after; forms rendered before it are refused.
    """
    session = await aiohttp_session.get_session(request)
    session[SESSION_FIELD] = _encode(secrets.token_bytes(_SECRET_BYTES))


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
