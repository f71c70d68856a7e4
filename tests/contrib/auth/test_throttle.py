"""Login throttling per account and per client address, on SQLite and PostgreSQL.

The browsers connect from different loopback addresses (127.0.0.1, 127.0.0.2, ...), so
the site sees different ``request.remote`` values, as it would for different clients.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select, update

from aiosite import session_scope
from tests.conftest import ProjectFactory, TestDatabase, site_with_tables

from .conftest import PASSWORD, BrowserFactory, auth, auth_yaml, make_auth_project, make_user

Site = TestClient[web.Request, web.Application]
WRONG = "not the password"


@asynccontextmanager
async def throttled_site(
    make_project: ProjectFactory, *, account: int, ip: int
) -> AsyncIterator[Site]:
    limits = f"  throttle_account: {account}\n  throttle_ip: {ip}\n  throttle_window: 600\n"
    root = make_auth_project(make_project, test_yaml=auth_yaml(limits))
    async with site_with_tables(root) as site:
        yield site


async def _failures(site: Site) -> list[tuple[str, str]]:
    module = auth()
    async with session_scope(site.app) as session:
        rows = await session.execute(
            select(module.LoginFailure.username, module.LoginFailure.ip).order_by(
                module.LoginFailure.id
            )
        )
        return [(username, ip) for username, ip in rows]


async def test_too_many_failures_for_one_account(
    make_project: ProjectFactory, browsers: BrowserFactory, database: TestDatabase
) -> None:
    async with throttled_site(make_project, account=3, ip=100) as site:
        await make_user(site.app, "ada")
        await make_user(site.app, "bob")
        first, second, third = (browsers(site, ip=f"127.0.0.{n}") for n in (1, 2, 3))
        assert (await first.login("ada", WRONG)).status == 400
        assert (await second.login("ADA ", WRONG)).status == 400  # the same account
        assert (await first.login("ada", WRONG)).status == 400
        assert await _failures(site) == [
            ("ada", "127.0.0.1"),
            ("ada", "127.0.0.2"),
            ("ada", "127.0.0.1"),
        ]

        # From any address, even with the right password: refused without a check.
        refused = await third.login("ada", PASSWORD)
        assert refused.status == 429
        assert "Too many failed logins for this account. Wait 10 minutes and try again." in (
            refused.text
        )
        assert 590 <= int(refused.headers["Retry-After"]) <= 600
        assert 'value="ada"' in refused.text
        assert "authenticated=False" in await third.whoami()
        assert len(await _failures(site)) == 3  # a refused attempt is not another failure

        # Other accounts are not affected.
        assert (await first.login("bob")).status == 303

        # Once the failures are older than the window, ada may log in again, and the
        # old rows are pruned with the next failure.
        await _age_failures(site, seconds=601)
        assert (await first.login("bob", WRONG)).status == 400
        assert await _failures(site) == [("bob", "127.0.0.1")]
        assert (await third.login("ada")).status == 303


async def test_too_many_failures_from_one_address(
    make_project: ProjectFactory, browsers: BrowserFactory, database: TestDatabase
) -> None:
    async with throttled_site(make_project, account=100, ip=3) as site:
        await make_user(site.app, "ada")
        here, elsewhere = browsers(site, ip="127.0.0.1"), browsers(site, ip="127.0.0.2")
        # Usernames that do not exist count as well.
        for username in ("ghost", "ada", "nobody"):
            assert (await here.login(username, WRONG)).status == 400
        refused = await here.login("ada", PASSWORD)
        assert refused.status == 429
        assert (
            "Too many failed logins for your network address. Wait 10 minutes and try again."
            in refused.text
        )
        refused = await here.login("someone-else", WRONG)
        assert refused.status == 429
        # Another client is not throttled.
        assert (await elsewhere.login("ada")).status == 303


async def test_unknown_usernames_are_throttled_like_real_ones(
    make_project: ProjectFactory, browsers: BrowserFactory
) -> None:
    async with throttled_site(make_project, account=2, ip=100) as site:
        browser = browsers(site)
        for _ in range(2):
            assert (await browser.login("ghost", WRONG)).status == 400
        refused = await browser.login("ghost", WRONG)
        assert refused.status == 429
        assert "Too many failed logins for this account." in refused.text


async def test_a_successful_login_clears_the_accounts_failures(
    make_project: ProjectFactory, browsers: BrowserFactory
) -> None:
    async with throttled_site(make_project, account=3, ip=100) as site:
        await make_user(site.app, "ada")
        browser = browsers(site)
        for _ in range(2):
            await browser.login("ada", WRONG)
        assert (await browser.login("ada")).status == 303
        assert await _failures(site) == []


async def _age_failures(site: Site, *, seconds: int) -> None:
    module = auth()
    async with session_scope(site.app) as session:
        await session.execute(
            update(module.LoginFailure).values(
                created=datetime.now(UTC) - timedelta(seconds=seconds)
            )
        )
        assert await session.scalar(select(func.count()).select_from(module.LoginFailure)) > 0


async def test_parallel_guesses_are_throttled_too(
    make_project: ProjectFactory, browsers: BrowserFactory, database: TestDatabase
) -> None:
    # Each guess is counted before its (slow) password check, so guesses sent at once see
    # each other: no more than the limit are checked.
    async with throttled_site(make_project, account=3, ip=100) as site:
        await make_user(site.app, "ada")
        guessers = [browsers(site, ip=f"127.0.0.{n}") for n in range(1, 13)]
        answers = await asyncio.gather(
            *(guesser.login("ada", f"guess {n}") for n, guesser in enumerate(guessers))
        )
        statuses = sorted(answer.status for answer in answers)
        assert statuses.count(400) <= 3
        assert statuses.count(429) >= 9
