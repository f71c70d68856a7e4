"""The ``session:`` settings section (browser sessions)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from aiosite.settings import Section, Settings


class SessionSettings(Section):
    """Browser sessions (aiohttp-session): an encrypted cookie, or Redis."""

    backend: Literal["cookie", "redis"] = "cookie"
    cookie_name: str = Field(default="aiosite_session", pattern=r"^[A-Za-z0-9_.-]+$")
    # Seconds a session lives after its last change; null: until the browser closes
    # (Redis keeps such sessions for redis_ttl).
    max_age: int | None = Field(default=14 * 24 * 3600, gt=0)
    # null: Secure outside development and test, i.e. sent over HTTPS only.
    cookie_secure: bool | None = None
    cookie_samesite: Literal["Lax", "Strict", "None"] = "Lax"
    cookie_domain: str | None = None
    cookie_path: str = "/"
    # null: the site's Redis, redis.url (timeouts and pool: the redis: section).
    redis_url: str | None = None
    # Seconds Redis keeps a session with no max_age.
    redis_ttl: int = Field(default=14 * 24 * 3600, gt=0)
    redis_prefix: str = "aiosite:session:"
    # Cache-Control of a response that read the visitor's session or CSRF cookie, when
    # the handler set none: for a visitor whose session holds nothing, and for one whose
    # session holds data (a signed-in user). null or "" sends none; Vary: Cookie is
    # added either way.
    cache_control_without_data: str | None = "private"
    cache_control_with_data: str | None = "private, no-store"


def cookie_secure(settings: Settings) -> bool:
    """Whether the session cookie is Secure: as set, else outside development/test."""
    return settings.secure_cookie(settings.section(SessionSettings).cookie_secure)
