"""CSRF enforcement: the request hook that refuses forged unsafe requests with 403.

A request with an unsafe method (anything but GET, HEAD, OPTIONS, TRACE) must carry the
visitor's CSRF token (of the session's secret; of the CSRF cookie's while the session is
empty) in the ``X-CSRF-Token`` header or the ``csrf_token`` form field, and must not come
from another site's page (``Origin``, and ``Referer`` over HTTPS).
Safe requests pay one set lookup.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable

import aiohttp_session
from aiohttp import hdrs, web
from aiohttp.http import HttpProcessingError

from aiosite.hooks import RequestFinalizer, add_request_finalizer
from aiosite.keys import CSRF_PENDING
from aiosite.security.csrf_cookie import CSRF_COOKIE
from aiosite.security.csrf_tokens import FIELD_NAME, HEADER_NAME, csrf_secret, token_matches
from aiosite.security.forwarded import ProxyTrust, request_is_https
from aiosite.security.origins import (
    Origin,
    TrustedOrigins,
    parse_origin,
    request_origin,
)
from aiosite.security.route_traits import route_traits
from aiosite.settings import Settings

logger = logging.getLogger("aiosite.security.csrf")

SAFE_METHODS = frozenset({hdrs.METH_GET, hdrs.METH_HEAD, hdrs.METH_OPTIONS, hdrs.METH_TRACE})
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
MULTIPART = "multipart/form-data"
_SHOWN_LENGTH = 100

RELOAD = "Reload the page with the form and submit it again."
MISSING_TOKEN = (
    "The request was refused because it carries no CSRF token, which protects you from "
    f"forms on other sites posting here in your name. {RELOAD} (Developers: put "
    "{{ csrf_input() }} in every POST form, or send the token in the X-CSRF-Token header.)"
)
HEADER_REQUIRED = (
    "The request was refused because it carries no CSRF token. This address reads its "
    "request body as a stream, so the token must come in the X-CSRF-Token header (or, for "
    "a multipart form, as its first field, csrf_token)."
)
WRONG_TOKEN = (
    "The request was refused because its CSRF token does not belong to your session: the "
    "page was probably loaded before you logged in or out, or before your session "
    f"expired. {RELOAD}"
)
NO_SESSION = (
    "The request was refused because your browser sent no session with it (no session "
    "or CSRF cookie), so its CSRF token cannot be checked: your session may have expired, "
    f"or cookies are blocked for this site. Allow cookies for this site. {RELOAD}"
)
UNREADABLE_FORM = "The form data could not be read: it is not valid {type} data."


def refuse(reason: str, message: str, request: web.Request) -> web.HTTPForbidden:
    # The reason goes to the log, never the submitted values.
    logger.warning("CSRF check failed (%s): %s %s", reason, request.method, request.path)
    return web.HTTPForbidden(text=message)


async def check_token(request: web.Request, token: str | None) -> None:
    """Raise 403 unless ``token`` is a CSRF token of the visitor's secret: the session's,
    or the CSRF cookie's while the session is empty."""
    if not token:
        raise refuse("token missing", MISSING_TOKEN, request)
    secret = await csrf_secret(request, create=False)
    if secret is None:
        session = await aiohttp_session.get_session(request)
        if session.new and request.config_dict[CSRF_COOKIE].value(request) is None:
            raise refuse("no session", NO_SESSION, request)
        raise refuse("token wrong", WRONG_TOKEN, request)
    if not token_matches(secret, token):
        raise refuse("token wrong", WRONG_TOKEN, request)


async def check_streamed_token(request: web.Request, token: str | None) -> None:
    """``app[CSRF_CHECK]``: for a body reader that found the token in the body itself."""
    await check_token(request, token)
    request[CSRF_PENDING] = False


class CsrfGuard:
    """The request hook (appended after the sessions hook, whose storage it reads)."""

    def __init__(self, settings: Settings) -> None:
        self.trusted = TrustedOrigins(settings.security.csrf_trusted_origins)
        self.proxies = ProxyTrust(settings.security)

    def __call__(self, request: web.Request) -> Awaitable[None] | None:
        if request.method in SAFE_METHODS:
            return None
        return self.check(request)

    async def check(self, request: web.Request) -> None:
        traits = route_traits(request)
        if traits.exempt or not traits.routed:
            return
        self.check_origin(request)
        token = request.headers.get(HEADER_NAME)
        if token is not None:
            await check_token(request, token)
            return
        content_type = request.content_type
        if traits.streams_body:
            # The body is the handler's to read: nothing may consume it here.
            if content_type != MULTIPART:
                raise refuse("token missing", HEADER_REQUIRED, request)
            request[CSRF_PENDING] = True
            add_request_finalizer(request, _pending_checker(request))
            return
        if content_type in FORM_TYPES:
            token = await _form_token(request, content_type)
        await check_token(request, token)

    def check_origin(self, request: web.Request) -> None:
        """Refuse a request sent from another site's page."""
        secure = request_is_https(request, self.proxies)
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is not None and origin != "null":
            self._require_same_or_trusted(request, origin, secure, "Origin")
            return
        if not secure:
            # Plain HTTP: an old browser or a privacy setting may send neither header,
            # and an attacker on the network could change them anyway.
            return
        referer = request.headers.get(hdrs.REFERER)
        if not referer:
            raise refuse(
                "no origin",
                "The request was refused because it names neither the page it came from "
                "(Referer) nor its site (Origin), so it cannot be told apart from a forged "
                f"one. {RELOAD} If a browser extension or setting strips the Referer header, "
                "allow it for this site.",
                request,
            )
        self._require_same_or_trusted(request, referer, secure, "Referer")

    def _require_same_or_trusted(
        self, request: web.Request, value: str, secure: bool, header: str
    ) -> None:
        sender = parse_origin(value)
        expected = request_origin(request.headers.get(hdrs.HOST, ""), secure=secure)
        if sender is not None and (sender == expected or sender in self.trusted):
            return
        shown = value if len(value) <= _SHOWN_LENGTH else value[:_SHOWN_LENGTH] + "…"
        message = (
            f"The request was refused because it was sent from another site ({header}: "
            f"{shown}). If you submitted a form on this site, reload the page with the form "
            "and submit it again. (Site owners: add the sending site's origin, "
            "scheme://host[:port], to security.csrf_trusted_origins to accept it.)"
        )
        if _https_behind_proxy(sender, expected):
            message += (
                " The browser used HTTPS but the site was reached over HTTP: behind an HTTPS "
                "proxy, set security.trust_proxy_headers to true, list the proxy's address in "
                "security.trusted_proxies (loopback by default) and have the proxy send "
                "X-Forwarded-Proto."
            )
        raise refuse(f"bad {header}", message, request)


def _https_behind_proxy(sender: Origin | None, expected: Origin | None) -> bool:
    return (
        sender is not None
        and expected is not None
        and sender[0] == "https"
        and expected[0] == "http"
        and sender[1] == expected[1]
    )


async def _form_token(request: web.Request, content_type: str) -> str | None:
    """The csrf_token field of a form body (which aiohttp keeps for the handler)."""
    try:
        form = await request.post()
    except web.HTTPException:
        raise  # 413 for a body over server.client_max_size
    except (ValueError, LookupError, HttpProcessingError) as exc:
        # A malformed body, or a charset Python does not know.
        raise web.HTTPBadRequest(text=UNREADABLE_FORM.format(type=content_type)) from exc
    value = form.get(FIELD_NAME)
    return value if isinstance(value, str) else None


def _pending_checker(request: web.Request) -> RequestFinalizer:
    async def log_if_unchecked(exc: BaseException | None) -> None:
        # Only when the handler succeeded: an error may well be why it never checked.
        # And only when it read the body: one that answered without reading it (a login
        # redirect) acted on nothing a forger sent.
        succeeded = exc is None or (isinstance(exc, web.HTTPException) and exc.status < 400)
        read_body = request.content.total_bytes > 0
        if succeeded and read_body and request.get(CSRF_PENDING):
            logger.error(
                "%s %s: the handler streamed a multipart body without checking its CSRF "
                "token; read the body with aiosite's upload reader, or call "
                "request.config_dict[CSRF_CHECK](request, token) with the csrf_token field",
                request.method,
                request.path,
            )

    return log_if_unchecked
