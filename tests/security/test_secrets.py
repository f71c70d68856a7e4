"""Secrets stay out of the access log and the debug error page."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from aiosite import SETTINGS, load_site
from aiosite.web.logs import AccessLogger
from tests.conftest import ProjectFactory
from tests.security.support import FILES, Client, form_token

# Fresh values each run: only a leak could put them on a page or in a log.
SECRET_KEY = secrets.token_urlsafe(40)
FALLBACK_KEY = secrets.token_urlsafe(40)
PASSWORD = "pw-" + secrets.token_hex(12)

DEBUG_YAML = f"""\
debug:
  enabled: true
  toolbar: false
security:
  secret_key: '{SECRET_KEY}'
  secret_key_fallbacks: ['{FALLBACK_KEY}']
"""

BOOM_ROUTES = """
    from aiohttp import web

    from aiosite import Routes, settings_of
    from aiosite.sessions import get_session

    routes = Routes()


    @routes.post("/login", name="login")
    async def login(request: web.Request) -> web.Response:
        form = await request.post()
        session = await get_session(request)
        stored = dict(session)
        settings = settings_of(request)
        security = settings.security
        user = form["username"]
        raise RuntimeError(f"login of {user} failed")


    @routes.get("/remember", name="remember")
    async def remember(request: web.Request) -> web.Response:
        # A session that holds data keeps the visitor's CSRF secret too.
        (await get_session(request))["theme"] = "dark"
        return web.Response(text="remembered")


    @routes.get("/peek", name="peek")
    async def peek(request: web.Request) -> web.Response:
        # The session's CSRF secret, which only the server ever sees.
        return web.Response(text=(await get_session(request)).get("_csrf", ""))
"""


@pytest.fixture
def project(make_project: ProjectFactory) -> Path:
    files = {
        **FILES,
        "PKG/auth/__init__.py": 'from aiosite import App\napp = App("auth", prefix="/auth")\n',
        "PKG/auth/routes.py": BOOM_ROUTES,
    }
    return make_project(files, apps=["home", "auth"], env_yaml={"development": DEBUG_YAML})


async def _secrets_of(client: Client) -> list[str]:
    """The session cookie, a CSRF token and the session's CSRF secret."""
    await client.get("/auth/remember")
    token = await form_token(client)
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/"))["aiosite_session"]
    secret = await (await client.get("/auth/peek")).text()
    assert len(secret) > 20
    return [cookie.value, token, secret]


def _login_form(token: str) -> dict[str, str]:
    return {"username": "bob", "password": PASSWORD, "csrf_token": token}


async def _debug_answers(project: Path) -> tuple[list[str], list[str]]:
    """The secrets a failing login carried, and the debug page and JSON answer for it."""
    async with TestClient(TestServer(load_site(project, "development"))) as client:
        secrets = await _secrets_of(client)
        token = secrets[1]
        resp = await client.post("/auth/login", data=_login_form(token))
        assert resp.status == 500
        page = await resp.text()
        # It is the debug page, with the locals of the failing frame.
        assert "login of bob failed" in page
        assert "stored" in page
        assert "security" in page
        resp = await client.post(
            "/auth/login", data=_login_form(token), headers={"Accept": "application/json"}
        )
        assert resp.status == 500
        answer = await resp.text()
        assert "login of bob failed" in answer
    return secrets, [page, answer]


async def test_debug_page_hides_cookies_and_the_secret_key(project: Path) -> None:
    (cookie, _token, _csrf_secret), answers = await _debug_answers(project)
    for text in answers:
        for secret in (SECRET_KEY, FALLBACK_KEY, cookie):
            assert secret not in text


async def test_debug_page_hides_posted_passwords_and_csrf_values(project: Path) -> None:
    (_cookie, token, csrf_secret), answers = await _debug_answers(project)
    for text in answers:
        for secret in (PASSWORD, token, csrf_secret):
            assert secret not in text


async def test_the_access_log_holds_no_secret(project: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="aiosite.access")
    server = TestServer(load_site(project, "development"))
    await server.start_server(
        access_log_class=AccessLogger, access_log=logging.getLogger("aiosite.access")
    )
    async with TestClient(server) as client:
        cookie, token, csrf_secret = await _secrets_of(client)
        await client.post(
            f"/submit?csrf_token={token}&password={PASSWORD}",
            data={"csrf_token": token, "password": PASSWORD},
            headers={"X-CSRF-Token": token, "Authorization": f"Bearer {PASSWORD}"},
        )
        await client.post("/auth/login", data=_login_form(token))
    lines = [r.getMessage() for r in caplog.records if r.name == "aiosite.access"]
    assert any('"POST /submit?' in line for line in lines), lines
    assert any('"POST /auth/login" 500' in line for line in lines), lines
    for line in lines:
        for secret in (SECRET_KEY, PASSWORD, cookie, token, csrf_secret):
            assert secret not in line


async def test_the_error_log_holds_no_secret(project: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    async with TestClient(TestServer(load_site(project, "development"))) as client:
        cookie, token, csrf_secret = await _secrets_of(client)
        await client.post("/auth/login", data=_login_form(token))
    text = "\n".join(
        r.getMessage() + (logging.Formatter().formatException(r.exc_info) if r.exc_info else "")
        for r in caplog.records
    )
    assert "login of bob failed" in text
    for secret in (SECRET_KEY, FALLBACK_KEY, PASSWORD, cookie, token, csrf_secret):
        assert secret not in text


async def test_settings_never_show_the_secret_key(project: Path) -> None:
    async with TestClient(TestServer(load_site(project, "development"))) as client:
        settings = client.app[SETTINGS]
        for shown in (repr(settings), str(settings), repr(settings.security)):
            assert SECRET_KEY not in shown
            assert FALLBACK_KEY not in shown
