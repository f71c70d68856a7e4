"""With sessions in Redis the cookie holds only the session's key: login must move the
session to a new key (session fixation), and logout must delete it."""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis

from tests.conftest import REDIS_ADDRESS, ProjectFactory, require_service, site_with_tables

from .conftest import BrowserFactory, auth_yaml, make_auth_project, make_user


async def test_login_moves_and_logout_deletes_the_redis_session(
    make_project: ProjectFactory, browsers: BrowserFactory
) -> None:
    require_service("Redis", *REDIS_ADDRESS)
    prefix = f"aiosite-test-auth-{uuid.uuid4().hex}:"
    test_yaml = auth_yaml() + f"session:\n  backend: redis\n  redis_prefix: '{prefix}'\n"
    redis = aioredis.Redis(host=REDIS_ADDRESS[0], port=REDIS_ADDRESS[1])
    try:
        async with site_with_tables(make_auth_project(make_project, test_yaml=test_yaml)) as site:
            await make_user(site.app, "ada")
            browser = browsers(site)
            await browser.get("/auth/login")
            assert browser.session_cookie is None  # a form alone stores no session
            assert [key async for key in redis.scan_iter(match=prefix + "*")] == []
            await browser.get("/blog/remember")  # a session from before the login
            before = browser.session_cookie
            assert before
            assert await redis.exists(prefix + before) == 1

            assert (await browser.login("ada")).status == 303
            logged_in = browser.session_cookie
            assert logged_in
            assert logged_in != before
            assert await redis.exists(prefix + before) == 0
            assert await redis.exists(prefix + logged_in) == 1
            # Whoever knew the key from before the login (session fixation) has nothing.
            stale = browsers(site)
            stale.set_session_cookie(before)
            assert "authenticated=False" in await stale.whoami()
            assert "user=ada" in await browser.whoami()

            assert (await browser.logout()).status == 303
            assert await redis.exists(prefix + logged_in) == 0
            assert "authenticated=False" in await browser.whoami()
            # A copy of the logged-in cookie is worth nothing after the logout.
            thief = browsers(site)
            thief.set_session_cookie(logged_in)
            assert "authenticated=False" in await thief.whoami()
    finally:
        keys = [key async for key in redis.scan_iter(match=prefix + "*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
