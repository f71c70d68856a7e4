"""Login throttling: too many failures for one account, or from one client address,
within ``auth.throttle_window`` seconds and further attempts are refused unchecked.

Failures are rows in ``auth_login_failure``, so every worker process (and every
machine on the same database) counts the same ones. Rows older than the window are
deleted as new failures are recorded.

The client address is ``aiosite.client_address(request)``: the connection's address, or
behind a reverse proxy, with ``security.trust_proxy_headers`` on, the address the proxy
saw (docs/auth.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from aiohttp import web
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from aiosite import client_address

from .config import AuthSettings
from .models import USERNAME_MAX, LoginFailure

UNKNOWN_ADDRESS = "unknown"
Reason = Literal["account", "ip"]


@dataclass(frozen=True, slots=True)
class Throttled:
    """Why logins are refused and for how many more seconds."""

    reason: Reason
    retry_after: int

    @property
    def message(self) -> str:
        who = "this account" if self.reason == "account" else "your network address"
        return (
            f"Too many failed logins for {who}. Wait {wait_text(self.retry_after)} and try again."
        )


def wait_text(seconds: int) -> str:
    if seconds < 60:
        return "1 second" if seconds == 1 else f"{seconds} seconds"
    minutes = math.ceil(seconds / 60)
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def client_ip(request: web.Request) -> str:
    return (client_address(request) or UNKNOWN_ADDRESS)[:64]


def account_key(username: str) -> str:
    """What failures are counted under: the username as typed, case and spaces aside."""
    return username.strip().casefold()[:USERNAME_MAX]


def _now() -> datetime:
    return datetime.now(UTC)


async def check(
    session: AsyncSession, settings: AuthSettings, username: str, ip: str, *, counted: int = 0
) -> Throttled | None:
    """Whether a login for ``username`` from ``ip`` must be refused now; ``counted``:
    how many of the rows are this attempt's own (recorded before the check)."""
    now = _now()
    window = timedelta(seconds=settings.throttle_window)
    limits: tuple[tuple[Reason, InstrumentedAttribute[str], str, int], ...] = (
        ("account", LoginFailure.username, account_key(username), settings.throttle_account),
        ("ip", LoginFailure.ip, ip, settings.throttle_ip),
    )
    for reason, column, value, limit in limits:
        # The limit-th most recent failure in the window: while it is in the window,
        # the limit is reached; it tells when the count drops below again.
        nth = await session.scalar(
            select(LoginFailure.created)
            .where(column == value, LoginFailure.created > now - window)
            .order_by(LoginFailure.created.desc())
            .offset(limit - 1 + counted)
            .limit(1)
        )
        if nth is not None:
            retry = math.ceil((nth + window - now).total_seconds())
            return Throttled(reason, max(retry, 1))
    return None


async def record_failure(
    session: AsyncSession, settings: AuthSettings, username: str, ip: str
) -> int:
    """Count a failed login, and forget those older than the window; the row's id."""
    now = _now()
    await session.execute(
        delete(LoginFailure).where(
            LoginFailure.created < now - timedelta(seconds=settings.throttle_window)
        )
    )
    failure = LoginFailure(username=account_key(username), ip=ip, created=now)
    session.add(failure)
    await session.flush()
    return failure.id


async def clear_account(session: AsyncSession, username: str) -> None:
    """Forget an account's failures after its owner logged in (the address's stay)."""
    await session.execute(
        delete(LoginFailure).where(LoginFailure.username == account_key(username))
    )


async def forget_attempt(session: AsyncSession, failure_id: int) -> None:
    """Take back an attempt counted before its check, which then refused it unchecked."""
    await session.execute(delete(LoginFailure).where(LoginFailure.id == failure_id))
