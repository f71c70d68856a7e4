"""Where the CSRF secret lives: the CSRF cookie while the visitor's session holds nothing,
the session alone once it holds data (a cookie someone planted never carries over), and
a login moves it into the session for good."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from http.cookies import SimpleCookie
from pathlib import Path

import aiohttp

from tests.conftest import site_client
from tests.security.support import Client

ROUTES = """\
from aiohttp import web

from aiosite import Routes, render
from aiosite.security import rotate_csrf_token
from aiosite.sessions import get_session, rotate_session

routes = Routes()


@routes.get("/form", name="form")
async def form(request: web.Request) -> web.Response:
    return await render(request, "home/form.html")


@routes.post("/submit", name="submit")
async def submit(request: web.Request) -> web.Response:
    return web.Response(text="saved")


@routes.get("/remember", name="remember")
async def remember(request: web.Request) -> web.Response:
    (await get_session(request))["theme"] = "dark"
    return web.Response(text="remembered")


@routes.post("/login", name="login")
async def login(request: web.Request) -> web.Response:
    session = await rotate_session(request)
    await rotate_csrf_token(request)
    session["user_id"] = 7
    return web.Response(text="logged in")


@routes.post("/careless-login", name="careless_login")
async def careless_login(request: web.Request) -> web.Response:
    # A login that forgot rotate_csrf_token.
    session = await rotate_session(request)
    session["user_id"] = 7
    return web.Response(text="logged in")
"""

# Two fields: both must carry the same secret, made once for the page.
FORM = (
    '<form method="post" action="/submit">{{ csrf_input() }}</form>'
    '<form method="post" action="/login">{{ csrf_input() }}</form>\n'
)
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def _project(make_project: Callable[..., Path], extra_yaml: str = "") -> Path:
    key = "k" * 8 + uuid.uuid4().hex
    return make_project(
        {"PKG/home/routes.py": ROUTES, "PKG/home/templates/home/form.html": FORM},
        env_yaml={"test": f"security:\n  secret_key: {key}\n{extra_yaml}"},
    )


def _set_cookie_headers(response: aiohttp.ClientResponse) -> dict[str, str]:
    found = {}
    for header in response.headers.getall("Set-Cookie", []):
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(header)
        for name in cookie:
            found[name] = header
    return found


def _jar(client: Client) -> dict[str, str]:
    return {cookie.key: cookie.value for cookie in client.session.cookie_jar}


async def _tokens(client: Client) -> list[str]:
    response = await client.get("/form")
    assert response.status == 200
    return TOKEN.findall(await response.text())


async def test_an_anonymous_form_keeps_its_secret_in_the_csrf_cookie(
    make_project: Callable[..., Path],
) -> None:
    root = _project(make_project)
    async with site_client(root) as client:
        response = await client.get("/form")
        tokens = TOKEN.findall(await response.text())
        headers = _set_cookie_headers(response)
        assert set(headers) == {"aiosite_csrf"}  # and no session cookie
        header = headers["aiosite_csrf"]
        for flag in ("HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=31536000"):
            assert flag in header
        assert "Secure" not in header
        # Both forms of the page carry the one secret, each masked afresh.
        assert len(tokens) == 2
        assert tokens[0] != tokens[1]
        for token in tokens:
            assert (await client.post("/submit", data={"csrf_token": token})).status == 200
        assert set(_jar(client)) == {"aiosite_csrf"}


async def test_a_secure_csrf_cookie_has_the_host_prefix(
    make_project: Callable[..., Path],
) -> None:
    async with site_client(_project(make_project), "production") as client:
        response = await client.get("/form")
        # Browsers take a __Host- cookie only from this host over HTTPS, with Path=/ and
        # no Domain: a sibling subdomain cannot set it.
        header = _set_cookie_headers(response)["__Host-aiosite_csrf"]
        for flag in ("Secure", "HttpOnly", "Path=/"):
            assert flag in header
        assert "Domain" not in header
        (token, _) = TOKEN.findall(await response.text())
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(header)
        sent = {"Cookie": f"__Host-aiosite_csrf={cookie['__Host-aiosite_csrf'].value}"}
        client.session.cookie_jar.clear()
        response = await client.post("/submit", data={"csrf_token": token}, headers=sent)
        assert response.status == 200
        # The unprefixed name, which anybody could set, is not read.
        sent = {"Cookie": f"aiosite_csrf={cookie['__Host-aiosite_csrf'].value}"}
        response = await client.post("/submit", data={"csrf_token": token}, headers=sent)
        assert response.status == 403


async def test_the_cookie_name_and_secure_flag_are_settings(
    make_project: Callable[..., Path],
) -> None:
    yaml = "  csrf_cookie_name: site_csrf\n  csrf_cookie_secure: true\n"
    async with site_client(_project(make_project, yaml)) as client:
        headers = _set_cookie_headers(await client.get("/form"))
        assert set(headers) == {"__Host-site_csrf"}  # Secure: prefixed
        assert "Secure" in headers["__Host-site_csrf"]
    yaml = "  csrf_cookie_name: site_csrf\n"
    async with site_client(_project(make_project, yaml)) as client:
        headers = _set_cookie_headers(await client.get("/form"))
        assert set(headers) == {"site_csrf"}
        assert "Secure" not in headers["site_csrf"]
    # Set to false, it is off in production too, and the name has no prefix.
    root = _project(make_project)
    with (root / "config" / "production.yaml").open("a") as production:
        production.write("  csrf_cookie_secure: false\n")
    async with site_client(root, "production") as client:
        headers = _set_cookie_headers(await client.get("/form"))
        assert set(headers) == {"aiosite_csrf"}
        assert "Secure" not in headers["aiosite_csrf"]


async def test_forged_and_foreign_tokens_are_refused(make_project: Callable[..., Path]) -> None:
    root = _project(make_project)
    async with site_client(root) as alice, site_client(root) as mallory:
        (alice_token, _) = await _tokens(alice)
        await _tokens(mallory)  # a CSRF cookie of her own
        response = await mallory.post("/submit", data={"csrf_token": alice_token})
        assert response.status == 403
        assert "does not belong to your session" in await response.text()
        async with site_client(root) as stranger:
            response = await stranger.post("/submit", data={"csrf_token": alice_token})
            assert response.status == 403
            assert "sent no session" in await response.text()
        # A CSRF cookie that is no secret of ours is ignored and replaced.
        async with site_client(root) as garbled:
            response = await garbled.get("/form", cookies={"aiosite_csrf": "not-a-secret"})
            replaced = _jar(garbled)["aiosite_csrf"]
            assert replaced != "not-a-secret"
            (token, _) = TOKEN.findall(await response.text())
            assert (await garbled.post("/submit", data={"csrf_token": token})).status == 200


async def test_a_session_that_holds_data_keeps_the_secret(
    make_project: Callable[..., Path],
) -> None:
    async with site_client(_project(make_project)) as client:
        await client.get("/remember")
        response = await client.get("/form")
        assert "aiosite_csrf" not in _set_cookie_headers(response)
        (token, _) = TOKEN.findall(await response.text())
        assert (await client.post("/submit", data={"csrf_token": token})).status == 200
        assert set(_jar(client)) == {"aiosite_session"}


async def test_the_cookie_counts_only_while_the_session_is_empty(
    make_project: Callable[..., Path],
) -> None:
    async with site_client(_project(make_project)) as client:
        (token, _) = await _tokens(client)  # made in the cookie
        await client.get("/remember")  # the session holds data from now on
        # The trade-off: a form rendered before is refused, with the reload message.
        response = await client.post("/submit", data={"csrf_token": token})
        assert response.status == 403
        assert "Reload the page with the form" in await response.text()
        # The next form page makes a secret in the session and deletes the cookie.
        response = await client.get("/form")
        deleted = _set_cookie_headers(response)["aiosite_csrf"]
        assert "Max-Age=0" in deleted
        (later, _) = TOKEN.findall(await response.text())
        assert (await client.post("/submit", data={"csrf_token": later})).status == 200
        assert set(_jar(client)) == {"aiosite_session"}


async def _plant(attacker: Client, victim: Client) -> tuple[str, str]:
    """The attacker's own CSRF cookie, planted in the victim's browser (a sibling
    subdomain, or a man in the middle over plain HTTP, can set cookies for the site),
    and a token of its secret."""
    (planted_token, _) = await _tokens(attacker)
    planted = _jar(attacker)["aiosite_csrf"]
    victim.session.cookie_jar.update_cookies(
        {"aiosite_csrf": planted}, response_url=victim.make_url("/")
    )
    return planted, planted_token


async def test_a_planted_cookie_is_not_used_once_the_session_holds_data(
    make_project: Callable[..., Path],
) -> None:
    root = _project(make_project)
    async with site_client(root) as victim, site_client(root) as attacker:
        planted, planted_token = await _plant(attacker, victim)
        # Before the login the session is empty: the planted secret is the visitor's
        # (the caveat of anonymous visitors); a login that does not rotate the token...
        response = await victim.post("/careless-login", data={"csrf_token": planted_token})
        assert await response.text() == "logged in"
        # ...still leaves the attacker's token worthless for the logged-in session.
        for cookies in ({}, {"aiosite_csrf": planted}):
            response = await victim.post(
                "/submit", data={"csrf_token": planted_token}, cookies=cookies
            )
            assert response.status == 403
            assert "does not belong to your session" in await response.text()
        response = await victim.get("/form")
        assert "Max-Age=0" in _set_cookie_headers(response)["aiosite_csrf"]
        (token, _) = TOKEN.findall(await response.text())
        assert (await victim.post("/submit", data={"csrf_token": token})).status == 200
        assert set(_jar(victim)) == {"aiosite_session"}


async def test_login_moves_the_secret_into_the_session_and_drops_the_cookie(
    make_project: Callable[..., Path],
) -> None:
    root = _project(make_project)
    async with site_client(root) as victim, site_client(root) as attacker:
        planted, planted_token = await _plant(attacker, victim)
        response = await victim.post("/login", data={"csrf_token": planted_token})
        assert await response.text() == "logged in"
        deleted = _set_cookie_headers(response)["aiosite_csrf"]
        assert 'aiosite_csrf=""' in deleted
        assert "Max-Age=0" in deleted
        assert set(_jar(victim)) == {"aiosite_session"}
        # Neither the planted token nor the cookie, sent again, passes any more.
        response = await victim.post("/submit", data={"csrf_token": planted_token})
        assert response.status == 403
        assert "before you logged in or out" in await response.text()
        response = await victim.post(
            "/submit", data={"csrf_token": planted_token}, cookies={"aiosite_csrf": planted}
        )
        assert response.status == 403
        # Pages rendered from now on carry the session's secret.
        (token, _) = await _tokens(victim)
        assert (await victim.post("/submit", data={"csrf_token": token})).status == 200
