"""Password hashing (argon2id, argon2-cffi) and the password-strength minimum.

Hashing and verifying take tens of milliseconds by design, so both run in a thread:
on the event loop they would stall every other request for that long.
"""

from __future__ import annotations

import asyncio
import base64
import secrets

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.low_level import ARGON2_VERSION

from aiosite import Settings

from .config import AuthSettings
from .models import UNUSABLE_PASSWORD

# Passwords longer than this are refused before hashing: nobody types them, and a
# megabyte of "password" is work a visitor should not be able to ask for.
PASSWORD_MAX = 4096


class Passwords:
    """argon2id with the parameters of ``auth.hasher``."""

    def __init__(self, settings: Settings) -> None:
        params = settings.section(AuthSettings).hasher
        self._hasher = PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_cost,
            parallelism=params.parallelism,
            type=Type.ID,
        )
        self._dummy = unmatchable_hash(self._hasher)

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored: str, password: str) -> bool:
        """Whether ``password`` matches the hash ``stored``. An unusable or unreadable
        hash matches nothing, after the same work as a real check."""
        if not stored.startswith("$argon2"):
            await self.dummy_verify(password)
            return False
        return await asyncio.to_thread(self._verify, stored, password)

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        """Whether ``stored`` was made with other parameters than the settings' (cheap:
        it reads the parameters written in the hash)."""
        try:
            return self._hasher.check_needs_rehash(stored)
        except (InvalidHashError, ValueError):
            return True

    async def dummy_verify(self, password: str) -> None:
        """Verify against a hash of no password, so that a login for a user who does not
        exist takes as long as one for a user who does."""
        await asyncio.to_thread(self._verify, self._dummy, password)


def unmatchable_hash(hasher: PasswordHasher) -> str:
    """An argon2id hash with ``hasher``'s parameters, a random salt and a random digest.

    Verifying a password against it does the work of any real check and matches nothing;
    making it hashes nothing, so a site with auth starts without running argon2 (two
    runs took a third of a second at startup, with a 64 MiB peak of memory each).
    """

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode().rstrip("=")

    return (
        f"$argon2id$v={ARGON2_VERSION}$m={hasher.memory_cost},t={hasher.time_cost},"
        f"p={hasher.parallelism}${b64(secrets.token_bytes(hasher.salt_len))}"
        f"${b64(secrets.token_bytes(hasher.hash_len))}"
    )


def password_problem(password: str, *, username: str, min_length: int) -> str | None:
    """What makes ``password`` too weak, written for the person choosing it, or None.

    Deliberately modest: a minimum length, not the username, not only digits.
    """
    if len(password) < min_length:
        return f"Use at least {min_length} characters."
    if len(password) > PASSWORD_MAX:
        return f"Use at most {PASSWORD_MAX} characters."
    if password.isdigit():
        return "Use more than digits: add letters or other characters."
    if username and password.strip().casefold() == username.strip().casefold():
        return "Choose a password that is not your username."
    return None


__all__ = ["PASSWORD_MAX", "UNUSABLE_PASSWORD", "Passwords", "password_problem", "unmatchable_hash"]
