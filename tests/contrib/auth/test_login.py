"""Logging in and out over HTTP: sessions, rotation, flash messages, ``next``."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from yarl import URL

from aiosite import session_scope
from tests.conftest import ProjectFactory, site_with_tables

from .conftest import (
    PASSWORD,
    Browser,
    BrowserFactory,
    auth,
    auth_yaml,
    make_auth_project,
    make_user,
    stored_user,
)

Site = TestClient[web.Request, web.Application]


async def test_login_and_logout(site: Site, browsers: BrowserFactory) -> None:
    await make_user(site.app, "ada")
    browser = browsers(site)
    assert await browser.whoami() == "user=nobody authenticated=False can_edit=False"

    answer = await browser.login("ada")
    assert answer.status == 303
    assert answer.location == "/"  # auth.login_redirect
    page = await browser.get("/blog/page")
    assert "Logged in as ada" in page.text
    assert '<p class="flash success">You are logged in as ada.</p>' in page.text
    assert "user=ada authenticated=True" in page.text
    assert (await stored_user(site.app, "ada")).last_login is not None

    answer = await browser.logout()
    assert answer.status == 303
    assert answer.location == "/"  # auth.logout_redirect
    page = await browser.get("/blog/page")
    assert '<p class="flash info">You are logged out.</p>' in page.text
    assert "user=nobody authenticated=False" in page.text

    # Logging in as someone else switches accounts.
    await make_user(site.app, "bob")
    await browser.login("ada")
    assert (await browser.login("bob")).status == 303
    assert "user=bob" in await browser.whoami()


async def test_logout_is_post_only(site: Site, browsers: BrowserFactory) -> None:
    await make_user(site.app, "ada")
    browser = browsers(site)
    await browser.login("ada")
    assert (await browser.get("/auth/logout")).status == 405
    assert "user=ada" in await browser.whoami()
    # Without the form's CSRF token a third-party page cannot log anybody out.
    refused = await browser.request("POST", "/auth/logout")
    assert refused.status == 403
    assert "user=ada" in await browser.whoami()


async def test_wrong_credentials_show_the_form_again(site: Site, browsers: BrowserFactory) -> None:
    await make_user(site.app, "ada")
    browser = browsers(site)
    for username, password in (("ada", "wrong password"), ("nobody", PASSWORD)):
        answer = await browser.login(username, password)
        assert answer.status == 400
        assert "Enter a correct username and password." in answer.text
        assert f'name="username" type="text" value="{username}"' in answer.text
        assert password not in answer.text  # a password is never sent back
    answer = await browser.submit("/auth/login", {"username": "", "password": ""})
    assert answer.status == 400
    assert "Enter your username." in answer.text
    assert "Enter your password." in answer.text
    assert "authenticated=False" in await browser.whoami()


async def test_login_rotates_the_session(site: Site, browsers: BrowserFactory) -> None:
    await make_user(site.app, "ada")
    browser = browsers(site)
    form = await browser.get("/auth/login")
    assert browser.session_cookie is None  # the form's CSRF secret is in a cookie of its own
    await browser.get("/blog/remember")  # a session from before the login
    before = browser.session_cookie
    assert before
    # The session holds data now: only its own secret counts, so the form is reloaded.
    form = await browser.get("/auth/login")
    answer = await browser.request(
        "POST",
        "/auth/login",
        data={"username": "ada", "password": PASSWORD, "csrf_token": form.csrf()},
    )
    assert answer.status == 303
    after = browser.session_cookie
    assert after
    assert after != before
    # Whoever held the session from before the login (session fixation) holds no login.
    attacker = browsers(site)
    attacker.set_session_cookie(before)
    assert "authenticated=False" in await attacker.whoami()


async def test_a_tampered_session_cookie_is_anonymous(site: Site, browsers: BrowserFactory) -> None:
    await make_user(site.app, "ada")
    browser = browsers(site)
    await browser.login("ada")
    cookie = browser.session_cookie
    assert cookie is not None
    middle = len(cookie) // 2
    flipped = "A" if cookie[middle] != "A" else "B"
    browser.set_session_cookie(cookie[:middle] + flipped + cookie[middle + 1 :])
    assert "authenticated=False" in await browser.whoami()
    browser.set_session_cookie(cookie)
    assert "user=ada" in await browser.whoami()


async def test_inactive_users_cannot_log_in(site: Site, browsers: BrowserFactory) -> None:
    await make_user(site.app, "ada", is_active=False)
    browser = browsers(site)
    answer = await browser.login("ada")
    assert answer.status == 400
    assert "Enter a correct username and password." in answer.text
    assert "authenticated=False" in await browser.whoami()


async def test_a_deactivated_user_is_logged_out(site: Site, browsers: BrowserFactory) -> None:
    await make_user(site.app, "ada")
    browser = browsers(site)
    await browser.login("ada")
    assert "user=ada" in await browser.whoami()
    async with session_scope(site.app) as session:
        user = await session.get(auth().User, (await stored_user(site.app, "ada")).id)
        user.is_active = False
    assert "authenticated=False" in await browser.whoami()


async def test_next_leads_back_to_the_page(site: Site, browsers: BrowserFactory) -> None:
    await make_user(site.app, "ada")
    browser = browsers(site)
    refused = await browser.get("/blog/private?tab=2")
    assert refused.status == 303
    location = URL(refused.location)
    assert location.path == "/auth/login"
    assert location.query["next"] == "/blog/private?tab=2"
    form = await browser.get(refused.location)
    assert 'name="next" value="/blog/private?tab=2"' in form.text
    answer = await browser.login("ada", next="/blog/private?tab=2")
    assert answer.status == 303
    assert answer.location == "/blog/private?tab=2"
    page = await browser.get(answer.location)
    assert page.status == 200
    assert page.text == "private page of ada"


async def test_login_needed_sends_to_the_login_page_with_the_next_given(
    site: Site, browsers: BrowserFactory
) -> None:
    await make_user(site.app, "ada")
    browser = browsers(site)
    refused = await browser.submit("/blog/comment", {}, form_page="/auth/login")
    assert refused.status == 303
    location = URL(refused.location)
    assert location.path == "/auth/login"
    assert location.query["next"] == "/somewhere"
    # An API client is told, not redirected.
    token = (await browser.get("/auth/login")).csrf()
    headers = {"X-CSRF-Token": token, "Accept": "application/json"}
    assert (await browser.request("POST", "/blog/comment", headers=headers)).status == 401
    await browser.login("ada")
    answer = await browser.submit("/blog/comment", {}, form_page="/auth/login")
    assert (answer.status, answer.text) == (200, "commented")


UNREADABLE_BODIES = [
    ("application/x-www-form-urlencoded; charset=bogus", b"username=ada&password=x"),
    ("application/x-www-form-urlencoded; charset=utf-8", b"username=\xff\xfe&password=x"),
]


async def test_an_unreadable_form_body_is_a_bad_request(
    site: Site, browsers: BrowserFactory
) -> None:
    await make_user(site.app, "ada")
    browser = browsers(site)
    for path in ("/auth/login", "/auth/register", "/auth/password"):
        if path == "/auth/password":
            await browser.login("ada")
        await _refuses_unreadable_bodies(browser, path)


async def _refuses_unreadable_bodies(browser: Browser, path: str) -> None:
    token = (await browser.get(path)).csrf()
    for content_type, body in UNREADABLE_BODIES:
        headers = {"X-CSRF-Token": token, "Content-Type": content_type}
        answer = await browser.request("POST", path, data=body, headers=headers)
        assert answer.status == 400, (content_type, answer.text)
        assert "could not be read" in answer.text


# Each is somewhere else to a browser: another host, a script, or a relative path.
OFFSITE = [
    "//evil.example/",
    "https://evil.example/",
    "/\\evil.example",
    "\\\\evil.example",
    "/\t/evil.example",
    "javascript:alert(1)",
    "evil.example",
    "http:/evil.example",
]


async def test_next_never_leaves_the_site(site: Site, browsers: BrowserFactory) -> None:
    await make_user(site.app, "ada")
    browser = browsers(site)
    for target in OFFSITE:
        form = await browser.get(str(URL("/auth/login").with_query(next=target)))
        assert 'name="next"' not in form.text, target
        answer = await browser.login("ada", next=target)
        assert answer.status == 303, target
        assert answer.location == "/", target


def test_safe_next_accepts_local_paths_only() -> None:
    safe_next = auth().safe_next
    assert safe_next("/blog/x?page=2#top") == "/blog/x?page=2#top"
    assert safe_next("/") == "/"
    for bad in ("", "//x.example", "/\\x.example", "https://x.example/", "x", None, 5, "/a\nb"):
        assert safe_next(bad) is None


async def test_login_redirect_and_login_url_may_be_paths_or_route_names(
    make_project: ProjectFactory, browsers: BrowserFactory
) -> None:
    extra = "  login_url: /auth/login\n  login_redirect: blog:page\n  logout_redirect: /bye\n"
    root = make_auth_project(make_project, test_yaml=auth_yaml(extra))
    async with site_with_tables(root) as site:
        await make_user(site.app, "ada")
        browser = browsers(site)
        assert (await browser.get("/blog/private")).location == "/auth/login?next=/blog/private"
        assert (await browser.login("ada")).location == "/blog/page"
        assert (await browser.logout()).location == "/bye"


async def test_user_is_in_every_template(site: Site, browsers: BrowserFactory) -> None:
    await make_user(site.app, "ada")
    browser = browsers(site)
    # The app's own pages, the project's base template, and error pages all see `user`.
    assert "Anonymous" in (await browser.get("/auth/login")).text
    await browser.login("ada")
    assert "Logged in as ada" in (await browser.get("/auth/login")).text
    assert "You are logged in as ada." in (await browser.get("/auth/login")).text
    missing = await browser.get("/no/such/page")
    assert missing.status == 404


async def test_a_project_overrides_auth_templates(
    make_project: ProjectFactory, browsers: BrowserFactory
) -> None:
    files = {"PKG/templates/auth/login.html": "our own login page {{ csrf_input() }}"}
    async with site_with_tables(make_auth_project(make_project, files=files)) as site:
        page = await browsers(site).get("/auth/login")
        assert page.status == 200
        assert page.text.startswith("our own login page")


async def test_error_pages_of_refused_hosts_render_for_nobody(
    site: Site, browsers: BrowserFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # The allowed-hosts check refuses the request before the session is attached; the
    # error page still renders with its `user` (anonymous).
    page = await browsers(site).get("/blog/page", headers={"Host": "evil.example"})
    assert page.status == 400
    assert page.text.startswith("<!doctype html>")  # the page, not the plain-text fallback
    assert "Rendering the error page" not in caplog.text
