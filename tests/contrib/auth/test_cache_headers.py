"""Pages of contrib.auth and of signed-in users are never cached for somebody else, and
showing the login form stores no session."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient

from .conftest import BrowserFactory, make_user

Site = TestClient[web.Request, web.Application]


async def test_the_login_form_is_private_and_stores_no_session(
    site: Site, browsers: BrowserFactory
) -> None:
    browser = browsers(site)
    form = await browser.get("/auth/login")
    assert form.status == 200
    assert form.headers["Cache-Control"] == "private"
    assert "Cookie" in form.headers["Vary"]
    assert browser.session_cookie is None


async def test_a_signed_in_users_pages_are_not_stored(site: Site, browsers: BrowserFactory) -> None:
    await make_user(site.app, "ada")
    browser = browsers(site)
    assert (await browser.login("ada")).status == 303
    # The login form's CSRF cookie is gone: the secret is in the session from now on.
    assert {cookie.key for cookie in browser.session.cookie_jar} == {"aiosite_session"}
    page = await browser.get("/blog/private")
    assert page.text == "private page of ada"
    assert page.headers["Cache-Control"] == "private, no-store"
    assert "Cookie" in page.headers["Vary"]
    # After logging out, the visitor is anonymous again.
    assert (await browser.logout()).status == 303
    page = await browser.get("/blog/page")
    assert "authenticated=False" in page.text
    # It showed the "logged out" flash, the last thing the session held.
    assert "You are logged out." in page.text
    assert page.headers["Cache-Control"] == "private"
    assert browser.session_cookie is None
