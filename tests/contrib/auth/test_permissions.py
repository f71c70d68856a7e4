"""``login_required``, ``permission_required``, grants to users and groups, superusers."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select
from yarl import URL

from aiosite import session_scope

from .conftest import BrowserFactory, auth, make_user

Site = TestClient[web.Request, web.Application]


async def _grant(site: Site, username: str, *perms: str) -> list[str]:
    module = auth()
    async with session_scope(site.app) as session:
        user = await session.scalar(select(module.User).where(module.User.username == username))
        known = module.site_permissions(site.app)
        return list(await module.grant(session, user, *perms, known=known))


async def _revoke(site: Site, username: str, *perms: str) -> list[str]:
    module = auth()
    async with session_scope(site.app) as session:
        user = await session.scalar(select(module.User).where(module.User.username == username))
        return list(await module.revoke(session, user, *perms))


async def test_login_required_sends_anonymous_visitors_to_log_in(
    site: Site, browsers: BrowserFactory
) -> None:
    browser = browsers(site)
    for path in ("/blog/private", "/blog/posts", "/blog/edit?x=1"):
        answer = await browser.get(path)
        assert answer.status == 303, path
        location = URL(answer.location)
        assert location.path == "/auth/login"
        assert location.query["next"] == path
    # A web.View method under permission_required: anonymous visitors log in first too.
    page = await browser.get("/auth/login")
    answer = await browser.request("POST", "/blog/posts", data={"csrf_token": page.csrf()})
    assert answer.status == 303
    assert URL(answer.location).path == "/auth/login"


async def test_api_routes_answer_401_in_json(site: Site, browsers: BrowserFactory) -> None:
    browser = browsers(site)
    answer = await browser.get("/blog/api/me")
    assert answer.status == 401
    assert answer.headers["Content-Type"].startswith("application/json")
    assert '"message":"Log in to do this."' in answer.text
    await make_user(site.app, "ada")
    await browser.login("ada")
    answer = await browser.get("/blog/api/me")
    assert answer.status == 200
    assert answer.text == '{"username":"ada"}'


async def test_permission_required_refuses_then_allows_after_a_grant(
    site: Site, browsers: BrowserFactory
) -> None:
    await make_user(site.app, "ada")
    browser = browsers(site)
    await browser.login("ada")
    assert (await browser.get("/blog/private")).status == 200
    refused = await browser.get("/blog/edit")
    assert refused.status == 403
    assert "You do not have permission to do this." in refused.text
    assert "can_edit=False" in await browser.whoami()

    assert await _grant(site, "ada", "blog.change_post") == ["blog.change_post"]
    assert await _grant(site, "ada", "blog.change_post") == []  # already held
    allowed = await browser.get("/blog/edit")
    assert allowed.status == 200
    assert allowed.text == "editing posts"
    assert "can_edit=True" in await browser.whoami()

    assert await _revoke(site, "ada", "blog.change_post") == ["blog.change_post"]
    assert (await browser.get("/blog/edit")).status == 403


async def test_view_methods_check_their_own_permission(
    site: Site, browsers: BrowserFactory
) -> None:
    await make_user(site.app, "ada")
    browser = browsers(site)
    await browser.login("ada")
    assert (await browser.get("/blog/posts")).text == "the posts"
    assert (await browser.submit("/blog/posts", {}, form_page="/auth/login")).status == 403
    await _grant(site, "ada", "blog.delete_post")
    answer = await browser.submit("/blog/posts", {}, form_page="/auth/login")
    assert answer.status == 200
    assert answer.text == "deleted a post"


async def test_permissions_through_a_group(site: Site, browsers: BrowserFactory) -> None:
    await make_user(site.app, "ada")
    await make_user(site.app, "bob")
    module = auth()
    async with session_scope(site.app) as session:
        editors, created = await module.get_or_create_group(session, "editors")
        assert created
        assert await module.grant(
            session, editors, "blog.change_post", known=module.site_permissions(site.app)
        ) == ["blog.change_post"]
        ada = await session.scalar(select(module.User).where(module.User.username == "ada"))
        assert await module.add_to_group(session, ada, editors)
        assert not await module.add_to_group(session, ada, editors)
    ada_browser, bob_browser = browsers(site), browsers(site)
    await ada_browser.login("ada")
    await bob_browser.login("bob")
    assert (await ada_browser.get("/blog/edit")).status == 200
    assert (await bob_browser.get("/blog/edit")).status == 403

    async with session_scope(site.app) as session:
        ada = await session.scalar(select(module.User).where(module.User.username == "ada"))
        editors, created = await module.get_or_create_group(session, "editors")
        assert not created
        assert await module.remove_from_group(session, ada, editors)
    assert (await ada_browser.get("/blog/edit")).status == 403


async def test_superusers_have_every_permission(site: Site, browsers: BrowserFactory) -> None:
    await make_user(site.app, "root", is_superuser=True, is_staff=True)
    browser = browsers(site)
    await browser.login("root")
    assert (await browser.get("/blog/edit")).status == 200
    assert (await browser.submit("/blog/posts", {}, form_page="/auth/login")).status == 200
    assert "can_edit=True" in await browser.whoami()


async def test_has_perm_on_the_user_object(site: Site) -> None:
    await make_user(site.app, "ada")
    await make_user(site.app, "root", is_superuser=True)
    await make_user(site.app, "gone", is_superuser=True, is_active=False)
    await _grant(site, "ada", "blog.view_post")
    module = auth()
    async with session_scope(site.app) as session:
        users = {user.username: user for user in await session.scalars(select(module.User))}
        with pytest.raises(RuntimeError, match="permissions of user 'ada' are not loaded"):
            users["ada"].has_perm("blog.view_post")
        assert await module.get_permissions(session, users["ada"]) == {"blog.view_post"}
        assert users["ada"].has_perm("blog.view_post")
        assert not users["ada"].has_perm("blog.change_post")
        assert users["root"].has_perm("blog.change_post")  # superuser
        assert not users["gone"].has_perm("blog.change_post")  # inactive
        assert not module.AnonymousUser().has_perm("blog.view_post")


async def test_permission_names_come_from_the_sites_models(site: Site) -> None:
    module = auth()
    known = module.site_permissions(site.app)
    assert {"blog.add_post", "blog.change_post", "blog.delete_post", "blog.view_post"} <= known
    assert {"auth.change_user", "auth.view_group", "auth.add_permission"} <= known
    await make_user(site.app, "ada")
    with pytest.raises(module.UnknownPermission, match=r"did you mean 'blog\.change_post'"):
        await _grant(site, "ada", "blog.chnage_post")
    with pytest.raises(module.UnknownPermission, match=r"unknown permission 'shop\.view_cart'"):
        await _grant(site, "ada", "blog.view_post", "shop.view_cart")
    # Refused before anything changed: not even the known one was granted.
    async with session_scope(site.app) as session:
        count = await session.scalar(select(func.count()).select_from(module.Permission))
    assert count == 0


async def test_a_misspelt_permission_is_a_server_error(
    site: Site, browsers: BrowserFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # Not a quiet 403 for everybody but superusers: the mistake is the site's.
    await make_user(site.app, "root", is_superuser=True)
    browser = browsers(site)
    await browser.login("root")
    assert (await browser.get("/blog/typo")).status == 500
    assert "unknown permission 'blog.chnage_post'" in caplog.text
    assert "did you mean 'blog.change_post'" in caplog.text
