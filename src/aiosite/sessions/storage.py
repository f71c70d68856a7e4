"""The two session stores: an encrypted cookie (the default) and Redis.

Both are aiohttp-session storages, so extensions written for aiohttp-session
(``aiohttp_session.get_session``) see the same session as aiosite's own code.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web
from aiohttp_session import SESSION_KEY, AbstractStorage, Session

from aiosite.exceptions import SessionStoreUnavailable, one_line
from aiosite.services.redis import unavailable_errors
from aiosite.sessions.config import SessionSettings

if TYPE_CHECKING:
    # Imported when a site uses Redis sessions: the client costs tens of ms at startup.
    import redis.asyncio as aioredis

    # Imported when the first session cookie is read or written: cryptography costs a
    # site that never uses its session about 9 MiB per worker and 15 ms of startup.
    from cryptography.fernet import MultiFernet

logger = logging.getLogger("aiosite.sessions")

T = TypeVar("T")

# Set on a request for which the session store failed (``session_store_failed``).
SESSION_STORE_FAILED: web.RequestKey[bool] = web.RequestKey("aiosite.session_store_failed", bool)


def session_store_failed(request: web.Request) -> bool:
    """Whether the session store (Redis) failed for this request: it is answered with a
    503, and its session is an empty one that is never saved. An error page's context
    processor checks it to show the visitor as unknown rather than wait on the store
    again (``aiosite.contrib.auth`` shows an anonymous user)."""
    return request.get(SESSION_STORE_FAILED) is True


def derive_key(secret: str, purpose: str) -> bytes:
    """32 bytes for one ``purpose`` from the site's secret key, so that the session
    cookie's key is never the secret key itself nor the key of anything else."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode())
    return hkdf.derive(secret.encode())


def cookie_options(settings: SessionSettings, *, secure: bool) -> dict[str, Any]:
    return {
        "cookie_name": settings.cookie_name,
        "domain": settings.cookie_domain,
        "max_age": settings.max_age,
        "path": settings.cookie_path,
        "secure": secure,
        "httponly": True,
        "samesite": settings.cookie_samesite,
    }


class EncryptedCookieStorage(AbstractStorage):
    """The whole session in the cookie, encrypted and authenticated with Fernet.

    aiohttp-session's own class takes one key; this one also decrypts cookies made with
    earlier keys (``security.secret_key_fallbacks``), so changing the key does not log
    everybody out at once. A cookie that does not decrypt (tampered, made with an
    unknown key, or older than max_age) gives an empty session.
    """

    def __init__(self, secrets_: list[str], settings: SessionSettings, *, secure: bool) -> None:
        super().__init__(**cookie_options(settings, secure=secure))
        self._secrets = list(secrets_)
        self._multi_fernet: MultiFernet | None = None

    @property
    def _fernet(self) -> MultiFernet:
        """Made on first use (see the TYPE_CHECKING imports)."""
        if self._multi_fernet is None:
            from cryptography.fernet import Fernet, MultiFernet

            keys = [
                base64.urlsafe_b64encode(derive_key(s, "aiosite.session.cookie"))
                for s in self._secrets
            ]
            self._multi_fernet = MultiFernet([Fernet(key) for key in keys])
        return self._multi_fernet

    async def load_session(self, request: web.Request) -> Session:
        cookie = self.load_cookie(request)
        if cookie is None:
            return Session(None, data=None, new=True, max_age=self.max_age)
        from cryptography.fernet import InvalidToken

        try:
            plain = self._fernet.decrypt(cookie.encode(), ttl=self.max_age)
            data = json.loads(plain)
        except (InvalidToken, ValueError):
            logger.info("A session cookie that does not decrypt was ignored")
            return Session(None, data=None, new=True, max_age=self.max_age)
        return Session(None, data=data, new=False, max_age=self.max_age)

    async def save_session(
        self, request: web.Request, response: web.StreamResponse, session: Session
    ) -> None:
        if session.empty:
            self.save_cookie(response, "", max_age=session.max_age)
            return
        plain = json.dumps(self._get_session_data(session)).encode()
        self.save_cookie(response, self._fernet.encrypt(plain).decode(), max_age=session.max_age)

    async def forget(self, request: web.Request, identity: str) -> None:
        """Nothing is kept on the server for a cookie session."""


class RedisStorage(AbstractStorage):
    """The session's data in Redis under a random key; the cookie holds only the key.

    Unlike aiohttp-session's own Redis storage, a rotated or emptied session's key is
    deleted, and every key expires (``redis_ttl`` for sessions without max_age).
    """

    def __init__(self, client: aioredis.Redis, settings: SessionSettings, *, secure: bool) -> None:
        super().__init__(**cookie_options(settings, secure=secure))
        self._redis = client
        self._prefix = settings.redis_prefix
        self._ttl = settings.redis_ttl
        self._unavailable = unavailable_errors()

    async def _call(self, request: web.Request, command: Awaitable[T]) -> T:
        """``command``'s result; Redis unreachable or silent: the request is marked and
        ``SessionStoreUnavailable`` raised (its own type, so that the 503 handler never
        takes a site's own Redis client errors for a sessions outage)."""
        try:
            return await command
        except self._unavailable as exc:
            request[SESSION_STORE_FAILED] = True
            if request.get(SESSION_KEY) is None:
                # aiohttp-session keeps no session that failed to load, so the error
                # page (its user, its flash messages) would wait on Redis once more:
                # it gets an empty session instead, which is never saved.
                request[SESSION_KEY] = Session(None, data=None, new=True, max_age=self.max_age)
            raise SessionStoreUnavailable(
                f"The session store (Redis) is unavailable: {one_line(exc)}"
            ) from exc

    def _key(self, identity: str) -> str:
        return self._prefix + identity

    async def load_session(self, request: web.Request) -> Session:
        cookie = self.load_cookie(request)
        # Keys are token_urlsafe(32); anything else is not worth a round trip.
        if cookie is None or not 20 <= len(cookie) <= 64:
            return Session(None, data=None, new=True, max_age=self.max_age)
        stored = await self._call(request, self._redis.get(self._key(cookie)))
        if stored is None:
            return Session(None, data=None, new=True, max_age=self.max_age)
        try:
            data = json.loads(stored)
        except ValueError:
            return Session(None, data=None, new=True, max_age=self.max_age)
        return Session(cookie, data=data, new=False, max_age=self.max_age)

    async def save_session(
        self, request: web.Request, response: web.StreamResponse, session: Session
    ) -> None:
        identity = session.identity
        if session.empty:
            if identity is not None:
                await self._call(request, self._redis.delete(self._key(str(identity))))
            self.save_cookie(response, "", max_age=session.max_age)
            return
        if identity is None:
            identity = secrets.token_urlsafe(32)
        data = json.dumps(self._get_session_data(session))
        ttl = session.max_age or self._ttl
        await self._call(request, self._redis.set(self._key(str(identity)), data, ex=ttl))
        self.save_cookie(response, str(identity), max_age=session.max_age)

    async def forget(self, request: web.Request, identity: str) -> None:
        """Delete a session's data (the old key of a rotated session)."""
        await self._call(request, self._redis.delete(self._key(identity)))
