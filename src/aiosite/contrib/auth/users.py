"""Who is making the request: logging in and out through the browser session.

The session holds the user's id and a hash derived from the user's password hash, so
that changing the password ends every other session of that user: their hash no
longer matches. Logging in rotates the session (a new cookie value, or Redis key)
against session fixation; logging out empties it.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Final

from aiohttp import web
from aiohttp_session import STORAGE_KEY
from sqlalchemy import func, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncSession

from aiosite import (
    Settings,
    database_failed,
    db_session,
    get_session,
    rotate_csrf_token,
    rotate_session,
    session_store_failed,
    settings_of,
)

from .models import User
from .permissions import get_permissions
from .state import passwords_of

SESSION_USER: Final = "_auth_user_id"
SESSION_HASH: Final = "_auth_hash"


class AnonymousUser:
    """The user of a request nobody is logged in to: no permissions at all."""

    __slots__ = ()

    id: None = None
    username: str = ""
    email: str = ""
    is_authenticated: bool = False
    is_anonymous: bool = True
    is_active: bool = False
    is_staff: bool = False
    is_superuser: bool = False

    def has_perm(self, perm: str) -> bool:
        return False

    def __str__(self) -> str:
        return "AnonymousUser"

    def __repr__(self) -> str:
        return "<AnonymousUser>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AnonymousUser)

    def __hash__(self) -> int:
        return hash(AnonymousUser)


AnyUser = User | AnonymousUser

# The request's user, looked up once per request.
CURRENT_USER: web.RequestKey[AnyUser] = web.RequestKey("aiosite.contrib.auth.user")


def _session_hashes(settings: Settings, password_hash: str) -> list[str]:
    """The session hash of ``password_hash`` under the secret key, then under each
    fallback key (sessions made before a key change stay logged in)."""
    keys = settings.security.secret_values() or [""]
    return [
        hmac.new(
            f"aiosite.contrib.auth.session:{key}".encode(), password_hash.encode(), hashlib.sha256
        ).hexdigest()
        for key in keys
    ]


def session_hash(settings: Settings, password_hash: str) -> str:
    return _session_hashes(settings, password_hash)[0]


async def current_user(request: web.Request) -> AnyUser:
    """The logged-in ``User``, or an ``AnonymousUser`` (``is_authenticated`` False).

    A session whose user is gone, inactive, or has changed password since it logged in
    is anonymous (and forgets its user). On the error page of a request whose database
    or session store failed (``aiosite.database_failed``, ``aiosite.session_store_failed``)
    the user is anonymous without a query.
    """
    user = request.get(CURRENT_USER)
    if user is None or (isinstance(user, User) and _stale(user)):
        if database_failed(request) or session_store_failed(request):
            # The error page of a database or session store outage: the user is shown
            # as unknown rather than failing the page a second time. The browser session
            # is left as it is, so the user is still logged in once the outage is over.
            return AnonymousUser()
        user = await _load_user(request)
        request[CURRENT_USER] = user
    return user


def _stale(user: User) -> bool:
    # The handler's database session ended (an error page renders after its rollback and
    # close) or was rolled back: the user is read again in the session in use now.
    state = sa_inspect(user)
    return bool(state.detached or state.expired)


async def _load_user(request: web.Request) -> AnyUser:
    if request.get(STORAGE_KEY) is None:
        # Refused before the session was attached (a host not allowed): its error page
        # is rendered for nobody.
        return AnonymousUser()
    session = await get_session(request)
    user_id = session.get(SESSION_USER)
    if type(user_id) is not int:
        return AnonymousUser()
    user = await db_session(request).get(User, user_id)
    stored = session.get(SESSION_HASH)
    if (
        user is not None
        and user.is_active
        and isinstance(stored, str)
        and any(
            hmac.compare_digest(stored, expected)
            for expected in _session_hashes(settings_of(request), user.password)
        )
    ):
        return user
    session.pop(SESSION_USER, None)
    session.pop(SESSION_HASH, None)
    return AnonymousUser()


async def login(request: web.Request, user: User) -> None:
    """Log ``user`` (loaded with ``db_session(request)``) in to this browser session.

    The session is rotated; another user's session data is dropped first.
    """
    session = await get_session(request)
    previous = session.get(SESSION_USER)
    if previous is not None and previous != user.id:
        session.clear()
    await update_session_hash(request, user)
    user.last_login = datetime.now(UTC)


async def logout(request: web.Request) -> None:
    """Empty the browser session and give it a new identity."""
    session = await get_session(request)
    session.invalidate()
    await rotate_session(request)
    request[CURRENT_USER] = AnonymousUser()


async def update_session_hash(request: web.Request, user: User) -> None:
    """Keep this session logged in after ``user``'s password changed here (every other
    session of the user ends); the session is rotated as at login."""
    session = await rotate_session(request)
    await rotate_csrf_token(request)
    session[SESSION_USER] = user.id
    session[SESSION_HASH] = session_hash(settings_of(request), user.password)
    request[CURRENT_USER] = user


async def username_taken(session: AsyncSession, name: str) -> bool:
    """Whether a user has ``name``, case aside: "Ada" and "ada" would be two accounts
    nobody can tell apart."""
    found = await session.scalar(select(User.id).where(func.lower(User.username) == name.lower()))
    return found is not None


async def authenticate(request: web.Request, username: str, password: str) -> User | None:
    """The active user with these credentials, or None; the password hash is upgraded
    when it was made with other hasher parameters than the settings'.

    A username that does not exist costs the same password check as one that does, so
    timing tells nothing about which usernames exist. Throttling is the caller's (the
    login view's) job: see ``throttle``.
    """
    passwords = passwords_of(request)
    session = db_session(request)
    user = await session.scalar(select(User).where(User.username == username))
    if user is None:
        await passwords.dummy_verify(password)
        return None
    if not await passwords.verify(user.password, password):
        return None
    if not user.is_active:
        return None
    if passwords.needs_rehash(user.password):
        user.password = await passwords.hash(password)
    return user


async def set_password(request: web.Request, user: User, password: str) -> None:
    """Store a hash of ``password`` for ``user`` (strength is the caller's check)."""
    user.password = await passwords_of(request).hash(password)


async def user_has_perm(request: web.Request, perm: str) -> bool:
    """Whether the request's user has ``perm``, loading their permissions if needed."""
    user = await current_user(request)
    if not isinstance(user, User):
        return False
    if user.is_active and not user.is_superuser:
        if user._loaded_permissions is None and database_failed(request):
            return False  # an outage's error page: unknown, so not granted
        await get_permissions(db_session(request), user)
    return user.has_perm(perm)
