"""Browser sessions through aiohttp-session: an encrypted cookie by default, or Redis.

The battery stores the site's session storage where aiohttp-session looks for it on each
request (so ``aiohttp_session.get_session`` works in any handler or extension) and saves
a session that changed onto the response, without a middleware: both are hooks of the
core (named ``aiosite.sessions``), and a request that never touches its session pays a
dictionary write and one check for them.

A session is stored (a Redis key, a cookie) only once it holds something: a visitor who
only reads pages, forms included, leaves nothing behind. A response that read the
session is marked personal (``Vary: Cookie``, ``Cache-Control``).

When the store (Redis) fails, the request is answered 503 and marked
(``session_store_failed``); its session is then an empty one that is never saved, so its
error page does not wait on the store a second time.
"""

from __future__ import annotations

import logging
import secrets
import warnings
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any

import aiohttp_session
import jinja2
from aiohttp import web
from aiohttp_session import SESSION_KEY, STORAGE_KEY, Session

from aiosite.apps import AppRegistry
from aiosite.battery import Battery
from aiosite.exceptions import SessionStoreUnavailable, one_line
from aiosite.hooks import hooks_of
from aiosite.keys import TEMPLATE_GLOBALS, VISITOR_COOKIES
from aiosite.probes import probes_of
from aiosite.services.redis import add_redis_check, redis_client
from aiosite.sessions.caching import PersonalCacheHeaders
from aiosite.sessions.config import SessionSettings, cookie_secure
from aiosite.sessions.flash import flash, flashed_messages, get_flashed_messages
from aiosite.sessions.storage import (
    EncryptedCookieStorage,
    RedisStorage,
    session_store_failed,
)
from aiosite.settings import Settings

if TYPE_CHECKING:
    import redis.asyncio as aioredis

logger = logging.getLogger("aiosite.sessions")

# The identity of the session a request rotated away from, deleted when it saves.
_ROTATED_FROM: web.RequestKey[str] = web.RequestKey("aiosite.session_rotated_from")


class SessionStore:
    """The site's session storage; the Redis one is made when the site starts."""

    def __init__(self, settings: Settings) -> None:
        self.site_settings = settings
        self.settings = settings.section(SessionSettings)
        self.secure = cookie_secure(settings)
        self.cache_headers = PersonalCacheHeaders(self.settings)
        self.storage: EncryptedCookieStorage | RedisStorage | None = None
        self._keys_seen = False
        self.client: aioredis.Redis | None = None
        if self.settings.backend == "cookie":
            self.storage = EncryptedCookieStorage(
                secret_keys(settings), self.settings, secure=self.secure
            )

    def attach(self, request: web.Request) -> None:
        """Request hook: where aiohttp_session.get_session finds the storage."""
        if not self._keys_seen:
            _accept_string_keys(request)
            self._keys_seen = True
        request[STORAGE_KEY] = self.storage
        # aiohttp-session loads the session when this is None; set here so that `save`
        # reads a key that is there (a missing one costs aiohttp a raised KeyError).
        request[SESSION_KEY] = None

    def save(self, request: web.Request, response: web.StreamResponse) -> Awaitable[None] | None:
        """Response hook: mark a response that read the session as personal, and write a
        session that changed (a new cookie, or to Redis)."""
        try:
            session = request[SESSION_KEY]
        except KeyError:  # refused before `attach` ran (a host not allowed)
            return None
        if session is None:  # never loaded: the one check such a request pays
            return None
        self.cache_headers.apply(response, session)
        if session_store_failed(request):
            # The visitor's session is unknown: none of its cookies is touched.
            return None
        writers = request.get(VISITOR_COOKIES)
        if writers is not None:
            for write in writers:
                write(response)
        storage = self.storage
        if not session._changed or storage is None:
            return None
        if session.new and session.empty and _ROTATED_FROM not in request:
            # Nothing to keep (a flash shown by the request that made it): no Redis key,
            # no cookie; a stale one the browser sent (expired, unknown) is deleted.
            if storage.cookie_name in request.cookies:
                storage.save_cookie(response, "", max_age=session.max_age)
            return None
        return self._save(storage, request, response, session)

    async def _save(
        self,
        storage: EncryptedCookieStorage | RedisStorage,
        request: web.Request,
        response: web.StreamResponse,
        session: Session,
    ) -> None:
        # Rotated away from and left empty (a logout): both storages delete the cookie
        # and store nothing new; the old key goes below.
        await storage.save_session(request, response, session)
        rotated = request.get(_ROTATED_FROM)
        if rotated is not None:
            await storage.forget(request, rotated)

    async def open(self) -> None:
        if self.settings.backend == "redis":
            # The factory imports the client: a site on cookie sessions never loads it.
            self.client = redis_client(
                self.site_settings, url=self.settings.redis_url, client_name="aiosite.sessions"
            )
            self.storage = RedisStorage(self.client, self.settings, secure=self.secure)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()


def _accept_string_keys(request: web.Request) -> None:
    # aiohttp-session's API keeps the storage and the session under string request keys,
    # for which aiohttp warns once per process, and a project that runs its tests with
    # warnings as errors would answer 500. Using each key once quietly is what aiohttp
    # counts as seen.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        request[SESSION_KEY] = None
        del request[SESSION_KEY]
        request[STORAGE_KEY] = None


def secret_keys(settings: Settings) -> list[str]:
    """The secret key first, then its fallbacks; a random key for a site that set none
    (a local one: aiosite.security refuses to start a public site without its own)."""
    key = settings.security.secret_key
    if key is None or not key.get_secret_value().strip():
        logger.warning(
            "security.secret_key is not set: using a random key, so sessions end when "
            "the site restarts (aiosite new writes one into config/development.yaml)"
        )
        return [secrets.token_urlsafe(50), *settings.security.secret_values()]
    return settings.security.secret_values()


async def get_session(request: web.Request) -> Session:
    """The request's session (a mutable mapping), loaded on first use; changes are saved
    onto the response. A tampered or expired cookie gives an empty session."""
    return await aiohttp_session.get_session(request)


async def rotate_session(request: web.Request) -> Session:
    """A new session (new cookie value, new Redis key) holding the current one's data:
    call it when the user's privileges change, e.g. at login, against session fixation."""
    old = await get_session(request)
    data = dict(old)
    if old.identity is not None:
        request[_ROTATED_FROM] = str(old.identity)
    session = await aiohttp_session.new_session(request)
    session.update(data)
    session.changed()
    return session


def _store_unavailable_page(request: web.Request, exc: SessionStoreUnavailable) -> None:
    # One line per failed request, no traceback: the cause is outside the code. The
    # client's messages name the host and port, never the URL's password.
    logger.warning(
        "The session store (Redis) is unavailable, answered 503 to %s %s: %s",
        request.method,
        request.path,
        one_line(exc.__cause__ or exc),
    )
    raise web.HTTPServiceUnavailable(
        text="Sessions are unavailable for a moment; try again shortly.",
        headers={"Retry-After": "5"},
    )


SESSION_STORE: web.AppKey[SessionStore] = web.AppKey("aiosite.session_store", SessionStore)


def _attach(app: web.Application, settings: Settings, registry: AppRegistry) -> None:
    store = SessionStore(settings)
    app[SESSION_STORE] = store
    hooks = hooks_of(app)
    hooks.add_request_hook(store.attach, name="aiosite.sessions")
    hooks.add_response_hook(store.save, name="aiosite.sessions")
    if store.settings.backend == "redis":
        hooks.add_exception_handler(SessionStoreUnavailable, _store_unavailable_page)
        url = store.settings.redis_url or settings.redis.url
        ping = add_redis_check(probes_of(app), settings, url, "sessions")
        if ping is not None:
            app.on_cleanup.append(ping.close)
    template_globals = app.get(TEMPLATE_GLOBALS)
    if template_globals is not None:
        template_globals["flashed_messages"] = _flashed_messages_global

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        await store.open()
        yield
        await store.close()

    app.cleanup_ctx.append(store_ctx)


battery = Battery("aiosite.sessions", _attach, {"session": SessionSettings})
setup = battery.setup


@jinja2.pass_context
async def _flashed_messages_global(ctx: Any) -> list[tuple[str, str]]:
    return await flashed_messages(ctx["request"])


__all__ = [
    "SESSION_STORE",
    "Session",
    "SessionSettings",
    "SessionStore",
    "SessionStoreUnavailable",
    "flash",
    "get_flashed_messages",
    "get_session",
    "rotate_session",
    "session_store_failed",
    "setup",
]
