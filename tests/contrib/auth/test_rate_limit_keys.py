"""Rate limits keyed by the signed-in user (``by_user_or_address``): with limits turned
off, the key is not computed, so the user and the session are not loaded for nothing."""

from __future__ import annotations

from tests.conftest import ProjectFactory, site_with_tables

from .conftest import BrowserFactory, auth_yaml, make_auth_project, make_user

LIMITED_FILES = {
    "PKG/home/routes.py": """
        from aiohttp import web

        from aiosite import Routes, rate_limit
        from aiosite.contrib.auth import by_user_or_address

        routes = Routes()


        @routes.get("/limited", name="limited")
        @rate_limit("1/minute", key=by_user_or_address)
        async def limited(request: web.Request) -> web.Response:
            return web.Response(text="served")
    """,
}


async def test_limits_turned_off_do_not_load_the_session_for_the_key(
    make_project: ProjectFactory, browsers: BrowserFactory
) -> None:
    test_yaml = auth_yaml() + "ratelimit:\n  enabled: false\n"
    root = make_auth_project(make_project, test_yaml=test_yaml, files=LIMITED_FILES)
    async with site_with_tables(root) as site:
        await make_user(site.app, "ada")
        browser = browsers(site)
        assert (await browser.login("ada")).status == 303
        for _ in range(3):
            page = await browser.get("/limited")
            assert (page.status, page.text) == (200, "served")
            assert "Vary" not in page.headers
        anonymous = await site.get("/limited")
        assert anonymous.status == 200
        assert "Vary" not in anonymous.headers


async def test_limits_on_key_by_the_signed_in_user(
    make_project: ProjectFactory, browsers: BrowserFactory
) -> None:
    # The contrast: counting per user reads the session, so the answer varies on it.
    root = make_auth_project(make_project, files=LIMITED_FILES)
    async with site_with_tables(root) as site:
        await make_user(site.app, "ada")
        browser = browsers(site)
        assert (await browser.login("ada")).status == 303
        page = await browser.get("/limited")
        assert page.status == 200
        assert "Cookie" in page.headers["Vary"]
        assert (await browser.get("/limited")).status == 429
        # Another user from the same address has a budget of its own.
        other = browsers(site)
        await make_user(site.app, "bob")
        assert (await other.login("bob")).status == 303
        assert (await other.get("/limited")).status == 200
