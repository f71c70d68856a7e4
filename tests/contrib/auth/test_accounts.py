"""Registering, changing passwords, and argon2 parameters upgraded at login."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from argon2 import extract_parameters

from tests.conftest import ProjectFactory, site_with_tables

from .conftest import (
    PASSWORD,
    BrowserFactory,
    auth_yaml,
    make_auth_project,
    make_user,
    stored_user,
)

Site = TestClient[web.Request, web.Application]
NEW_PASSWORD = "a new and longer one"  # noqa: S105


def _registration(username: str = "ada", **fields: str) -> dict[str, str]:
    data = {"username": username, "email": "", "password1": PASSWORD, "password2": PASSWORD}
    data.update(fields)
    return data


async def test_register_creates_the_account_and_logs_in(
    site: Site, browsers: BrowserFactory
) -> None:
    browser = browsers(site)
    form = await browser.get("/auth/register")
    assert form.status == 200
    assert 'name="password2"' in form.text
    answer = await browser.submit("/auth/register", _registration("ada", email="ada@example.com"))
    assert answer.status == 303
    assert answer.location == "/"
    page = await browser.get("/blog/page")
    assert "Welcome, ada: your account is ready." in page.text
    assert "user=ada authenticated=True" in page.text
    user = await stored_user(site.app, "ada")
    assert user.email == "ada@example.com"
    assert user.password.startswith("$argon2id$")
    assert PASSWORD not in user.password
    assert not user.is_staff
    assert not user.is_superuser
    # The new account logs in from elsewhere with that password.
    assert (await browsers(site).login("ada")).status == 303


REGISTER_MISTAKES = [
    ({"username": ""}, "username", "Enter a username."),
    ({"username": "ada lovelace"}, "username", "Use only letters, digits"),
    ({"email": "not-an-address"}, "email", "Enter an email address such as"),
    ({"password1": "short", "password2": "short"}, "password1", "Use at least 8 characters."),
    ({"password1": "1234567890", "password2": "1234567890"}, "password1", "Use more than digits"),
    (
        {"username": "adalovelace", "password1": "AdaLovelace", "password2": "AdaLovelace"},
        "password1",
        "Choose a password that is not your username.",
    ),
    ({"password2": "something else"}, "password2", "The two passwords differ"),
]


async def test_register_says_what_is_wrong(site: Site, browsers: BrowserFactory) -> None:
    browser = browsers(site)
    for fields, field, message in REGISTER_MISTAKES:
        answer = await browser.submit("/auth/register", _registration(**fields))
        assert answer.status == 400, fields
        assert f'<p class="field-error" id="id_{field}-error">{message}' in answer.text
        assert 'aria-invalid="true"' in answer.text
        assert "authenticated=False" in await browser.whoami()


async def test_register_refuses_a_taken_username_whatever_its_case(
    site: Site, browsers: BrowserFactory
) -> None:
    await make_user(site.app, "Ada")
    answer = await browsers(site).submit("/auth/register", _registration("ada"))
    assert answer.status == 400
    assert "That username is taken; choose another." in answer.text
    assert 'value="ada"' in answer.text


async def test_registration_can_be_closed(
    make_project: ProjectFactory, browsers: BrowserFactory
) -> None:
    root = make_auth_project(make_project, test_yaml=auth_yaml("  registration: false\n"))
    async with site_with_tables(root) as site:
        browser = browsers(site)
        closed = await browser.get("/auth/register")
        assert closed.status == 404
        assert "This site does not take new accounts." in closed.text
        page = await browser.get("/auth/login")
        assert "Register" not in page.text
        answer = await browser.request(
            "POST", "/auth/register", data={**_registration(), "csrf_token": page.csrf()}
        )
        assert answer.status == 404
        assert await stored_user(site.app, "ada") is None


async def test_password_change_needs_a_login(site: Site, browsers: BrowserFactory) -> None:
    answer = await browsers(site).get("/auth/password")
    assert answer.status == 303
    assert answer.location == "/auth/login?next=/auth/password"


async def test_password_change_ends_the_users_other_sessions(
    site: Site, browsers: BrowserFactory
) -> None:
    await make_user(site.app, "ada")
    await make_user(site.app, "bob")
    laptop, phone, bob = browsers(site), browsers(site, ip="127.0.0.2"), browsers(site)
    for browser, name in ((laptop, "ada"), (phone, "ada"), (bob, "bob")):
        assert (await browser.login(name)).status == 303
    before = phone.session_cookie

    change = {
        "old_password": PASSWORD,
        "new_password1": NEW_PASSWORD,
        "new_password2": NEW_PASSWORD,
    }
    answer = await phone.submit("/auth/password", change)
    assert answer.status == 303
    page = await phone.get("/blog/page")
    assert "Your password is changed." in page.text
    assert "user=ada authenticated=True" in page.text  # this session goes on...
    assert phone.session_cookie != before  # ...under a new identity
    assert "authenticated=False" in await laptop.whoami()  # the other one ended
    assert "user=bob" in await bob.whoami()  # other users' sessions are untouched

    assert (await browsers(site).login("ada", PASSWORD)).status == 400
    assert (await browsers(site).login("ada", NEW_PASSWORD)).status == 303


PASSWORD_CHANGE_MISTAKES = [
    ({"old_password": "wrong one"}, "old_password", "That is not your current password."),
    ({"old_password": ""}, "old_password", "Enter your current password."),
    ({"new_password1": "short", "new_password2": "short"}, "new_password1", "Use at least 8"),
    ({"new_password2": "different"}, "new_password2", "The two passwords differ"),
    (
        {"new_password1": PASSWORD, "new_password2": PASSWORD},
        "new_password1",
        "Choose a password other than your current one.",
    ),
]


async def test_password_change_says_what_is_wrong(site: Site, browsers: BrowserFactory) -> None:
    await make_user(site.app, "ada")
    browser = browsers(site)
    await browser.login("ada")
    data = {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    for change, field, message in PASSWORD_CHANGE_MISTAKES:
        answer = await browser.submit("/auth/password", {**data, **change})
        assert answer.status == 400, change
        assert f'<p class="field-error" id="id_{field}-error">{message}' in answer.text
    assert "user=ada" in await browser.whoami()
    assert (await browsers(site).login("ada", PASSWORD)).status == 303


async def test_login_rehashes_a_password_made_with_other_parameters(
    make_project: ProjectFactory, browsers: BrowserFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_auth_project(make_project)
    async with site_with_tables(root) as site:
        await make_user(site.app, "ada")
        old_hash = (await stored_user(site.app, "ada")).password
    assert extract_parameters(old_hash).time_cost == 1

    # The site now asks for more work per hash (settings changed, site restarted).
    monkeypatch.setenv("AIOSITE_AUTH__HASHER__TIME_COST", "2")
    monkeypatch.setenv("AIOSITE_AUTH__HASHER__MEMORY_COST", "16")
    async with site_with_tables(root) as site:
        browser = browsers(site)
        assert (await browser.login("ada", "wrong password")).status == 400
        assert (await stored_user(site.app, "ada")).password == old_hash  # only on success
        assert (await browser.login("ada")).status == 303
        new_hash = (await stored_user(site.app, "ada")).password
        assert new_hash != old_hash
        params = extract_parameters(new_hash)
        assert (params.time_cost, params.memory_cost) == (2, 16)
        # This session holds the new hash's session hash: it stays logged in.
        assert "user=ada" in await browser.whoami()
        assert (await browsers(site).login("ada")).status == 303
        assert (await stored_user(site.app, "ada")).password == new_hash  # no rehash again
