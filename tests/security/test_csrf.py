"""CSRF enforcement through HTTP: tokens, origins, exemptions, streamed uploads, limits."""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import ProjectFactory, site_client
from tests.security.support import FILES, Client, form_token, meta_token, site_origin

TRUSTED_YAML = """\
security:
  trust_proxy_headers: true
  csrf_trusted_origins: ["https://app.example.com", "https://*.partner.test"]
server:
  client_max_size: 4096
"""


@pytest.fixture
def project(make_project: ProjectFactory) -> Path:
    return make_project(FILES, env_yaml={"test": TRUSTED_YAML})


async def _message(resp: aiohttp.ClientResponse) -> str:
    assert resp.content_type == "text/html"
    return await resp.text()


async def test_a_form_post_needs_the_token_of_its_session(project: Path) -> None:
    async with site_client(project) as client:
        resp = await client.post("/submit", data={"title": "t"})
        assert resp.status == 403
        page = await _message(resp)
        assert "carries no CSRF token" in page
        assert "Reload the page" in page

        token = await form_token(client)
        resp = await client.post("/submit", data={"title": "first", "csrf_token": token})
        assert resp.status == 200
        assert await resp.text() == "saved first"
        # The same token works again, and every render masks it differently.
        resp = await client.post("/submit", data={"title": "again", "csrf_token": token})
        assert await resp.text() == "saved again"
        assert await form_token(client) != token

        resp = await client.post("/submit", data={"title": "t", "csrf_token": token[:-4] + "AAAA"})
        assert resp.status == 403
        assert "does not belong to your session" in await _message(resp)
        resp = await client.post("/submit", data={"title": "t", "csrf_token": "garbage"})
        assert resp.status == 403


async def test_a_multipart_form_carries_the_token_too(project: Path) -> None:
    async with site_client(project) as client:
        token = await form_token(client)
        form = aiohttp.FormData()
        form.add_field("csrf_token", token)
        form.add_field("title", "multi")
        resp = await client.post("/submit", data=form)
        assert resp.status == 200
        assert await resp.text() == "saved multi"


async def test_rotating_the_token_retires_the_old_one(project: Path) -> None:
    async with site_client(project) as client:
        old = await form_token(client)
        resp = await client.post("/login", data={"csrf_token": old})
        assert await resp.text() == "logged in"
        resp = await client.post("/submit", data={"csrf_token": old})
        assert resp.status == 403
        assert "before you logged in or out" in await resp.text()
        new = await form_token(client)
        assert (await client.post("/submit", data={"csrf_token": new})).status == 200


async def test_a_token_of_another_session_is_refused(project: Path) -> None:
    async with site_client(project) as alice, site_client(project) as bob:
        alice_token = await form_token(alice)
        await form_token(bob)  # bob has a session with a secret of its own
        resp = await bob.post("/submit", data={"csrf_token": alice_token})
        assert resp.status == 403
        assert "does not belong to your session" in await resp.text()
        # A client without any session: nothing to check the token against.
        async with site_client(project) as stranger:
            resp = await stranger.post("/submit", data={"csrf_token": alice_token})
            assert resp.status == 403
            assert "sent no session" in await resp.text()


async def test_javascript_clients_send_the_header(project: Path) -> None:
    async with site_client(project) as client:
        token = await meta_token(client)
        headers = {"X-CSRF-Token": token, "Accept": "application/json"}
        resp = await client.put("/items/1", json={"name": "x"}, headers=headers)
        assert resp.status == 200
        assert await resp.text() == "replaced"
        resp = await client.delete("/items/1", headers=headers)
        assert await resp.text() == "removed"
        # Without it a JSON client gets a JSON refusal.
        resp = await client.put("/items/1", json={}, headers={"Accept": "application/json"})
        assert resp.status == 403
        assert "no CSRF token" in (await resp.json())["error"]["message"]
        bad = {"X-CSRF-Token": _altered(token), "Accept": "application/json"}
        resp = await client.delete("/items/1", headers=bad)
        assert resp.status == 403
        # The token from get_csrf_token(request) works the same.
        api_token = (await (await client.get("/token")).json())["token"]
        resp = await client.delete("/items/1", headers={"X-CSRF-Token": api_token})
        assert resp.status == 200


async def test_exempt_handlers_need_no_token(project: Path) -> None:
    async with site_client(project) as client:
        for path, text in (
            ("/hook", "hook ok"),
            ("/wrapped-hook", "wrapped hook ok"),
            ("/view-hook", "view hook ok"),
            ("/view-method", "view method ok"),
        ):
            resp = await client.post(
                path, json={"event": "paid"}, headers={"Origin": "https://x.io"}
            )
            assert resp.status == 200, path
            assert await resp.text() == text
        # Exempting a view's post leaves its delete protected.
        assert (await client.delete("/view-method")).status == 403


async def test_unmatched_requests_keep_their_404_and_405(project: Path) -> None:
    async with site_client(project) as client:
        assert (await client.post("/nowhere")).status == 404
        resp = await client.post("/plain")
        assert resp.status == 405


async def test_a_foreign_origin_is_refused(project: Path) -> None:
    async with site_client(project) as client:
        token = await form_token(client)
        data = {"csrf_token": token}
        resp = await client.post("/submit", data=data, headers={"Origin": "http://evil.example"})
        assert resp.status == 403
        page = await _message(resp)
        assert "sent from another site" in page
        assert "security.csrf_trusted_origins" in page
        # Same host, other port: another origin.
        other = f"http://{client.server.host}:{client.server.port + 1}"
        resp = await client.post("/submit", data=data, headers={"Origin": other})
        assert resp.status == 403
        # An origin that does not parse (an empty IDNA label) is refused, not a 500.
        for broken in ("https://xn--", "http://a..b", "http://[::1"):
            resp = await client.post("/submit", data=data, headers={"Origin": broken})
            assert resp.status == 403, broken
        # The site's own origin, and "null" on plain HTTP, are accepted.
        for origin in (site_origin(client), "null"):
            resp = await client.post("/submit", data=data, headers={"Origin": origin})
            assert resp.status == 200, origin


async def test_https_requires_a_same_origin_origin_or_referer(project: Path) -> None:
    https = {"X-Forwarded-Proto": "https"}
    async with site_client(project) as client:
        token = await form_token(client)
        data = {"csrf_token": token}
        resp = await client.post("/submit", data=data, headers=https)
        assert resp.status == 403
        assert "neither the page it came from" in await _message(resp)
        resp = await client.post("/submit", data=data, headers={**https, "Origin": "null"})
        assert resp.status == 403

        own = site_origin(client, "https")
        for header in ({"Origin": own}, {"Referer": own + "/form?x=1"}):
            resp = await client.post("/submit", data=data, headers={**https, **header})
            assert resp.status == 200, header
        # An HTTP page of the same host is another origin for an HTTPS request.
        insecure = site_origin(client, "http") + "/form"
        resp = await client.post("/submit", data=data, headers={**https, "Referer": insecure})
        assert resp.status == 403
        resp = await client.post(
            "/submit", data=data, headers={**https, "Referer": "https://evil.example/form"}
        )
        assert resp.status == 403


async def test_trusted_origins_are_accepted(project: Path) -> None:
    https = {"X-Forwarded-Proto": "https"}
    async with site_client(project) as client:
        data = {"csrf_token": await form_token(client)}
        for origin in ("https://app.example.com", "https://shop.partner.test"):
            resp = await client.post("/submit", data=data, headers={**https, "Origin": origin})
            assert resp.status == 200, origin
            resp = await client.post("/submit", data=data, headers={"Origin": origin})
            assert resp.status == 200, origin
        resp = await client.post(
            "/submit", data=data, headers={**https, "Referer": "https://app.example.com/p"}
        )
        assert resp.status == 200
        for origin in (
            "http://app.example.com",
            "https://partner.test",
            "https://evilpartner.test",
        ):
            resp = await client.post("/submit", data=data, headers={**https, "Origin": origin})
            assert resp.status == 403, origin


async def test_https_browser_behind_an_untrusted_proxy_gets_a_hint(
    make_project: ProjectFactory,
) -> None:
    root = make_project(FILES)
    async with site_client(root) as client:
        data = {"csrf_token": await form_token(client)}
        resp = await client.post(
            "/submit", data=data, headers={"Origin": site_origin(client, "https")}
        )
        assert resp.status == 403
        assert "security.trust_proxy_headers" in await resp.text()


async def test_an_oversized_form_gets_413(project: Path) -> None:
    async with site_client(project) as client:
        token = await form_token(client)
        resp = await client.post("/submit", data={"csrf_token": token, "title": "x" * 10_000})
        assert resp.status == 413
        assert "accepts at most 4096 bytes" in await _message(resp)


async def test_an_unreadable_form_gets_400(project: Path) -> None:
    async with site_client(project) as client:
        await form_token(client)
        for content_type, body in (
            ("multipart/form-data", b"no boundary"),
            ("multipart/form-data; boundary=x", b"never the boundary"),
            ("application/x-www-form-urlencoded; charset=no-such-charset", b"a=b"),
        ):
            resp = await client.post("/submit", data=body, headers={"Content-Type": content_type})
            assert resp.status == 400, content_type
            assert "form data could not be read" in await resp.text()


def _upload(token: str | None, *, token_first: bool = True) -> aiohttp.FormData:
    form = aiohttp.FormData()
    if token is not None and token_first:
        form.add_field("csrf_token", token)
    form.add_field("file", b"0123456789", filename="a.txt", content_type="text/plain")
    if token is not None and not token_first:
        form.add_field("csrf_token", token)
    return form


async def test_streamed_uploads_check_the_token_themselves(project: Path) -> None:
    async with site_client(project) as client:
        token = await form_token(client)
        resp = await client.post("/upload", data=_upload(token))
        assert resp.status == 200
        assert await resp.text() == "stored [10]"
        # Checked by the body reader through app[CSRF_CHECK]:
        resp = await client.post("/upload", data=_upload(None))
        assert resp.status == 403
        resp = await client.post("/upload", data=_upload(token, token_first=False))
        assert resp.status == 403
        resp = await client.post("/upload", data=_upload(_altered(token)))
        assert resp.status == 403
        # The header works too; a body that is no multipart form needs it.
        resp = await client.post("/upload", data=_upload(None), headers={"X-CSRF-Token": token})
        assert resp.status == 200
        resp = await client.post("/upload", data=b"raw", headers={"Content-Type": "text/plain"})
        assert resp.status == 403
        assert "X-CSRF-Token header" in await resp.text()
        # The origin check is made before the handler reads anything.
        resp = await client.post(
            "/upload", data=_upload(token), headers={"Origin": "http://evil.example"}
        )
        assert resp.status == 403


async def test_a_streaming_handler_that_never_checks_is_logged(project: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.ERROR, logger="aiosite.security.csrf")
    async with site_client(project) as client:
        resp = await client.post("/careless-upload", data=_upload(None))
        assert resp.status == 200
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any("/careless-upload" in m and "without checking" in m for m in errors)
        caplog.clear()
        token = await form_token(client)
        resp = await client.post("/upload", data=_upload(token))
        assert resp.status == 200
        assert not [r for r in caplog.records if r.levelno == logging.ERROR]


async def test_refusals_are_logged_without_the_token(project: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    async with site_client(project) as client:
        token = await form_token(client)
        wrong = _altered(token)
        await client.post("/submit", data={"csrf_token": wrong})
    lines = [r.getMessage() for r in caplog.records if r.name == "aiosite.security.csrf"]
    assert lines == ["CSRF check failed (token wrong): POST /submit"]


async def test_csrf_in_the_middleware_mode_of_the_core(make_project: ProjectFactory) -> None:
    site = """
        from aiohttp import web

        @web.middleware
        async def passthrough(request, handler):
            return await handler(request)

        middlewares = [passthrough]
    """
    root = make_project({**FILES, "PKG/site.py": site})
    async with site_client(root) as client:
        client_: Client = client
        assert len(client_.app.middlewares) == 2
        assert (await client.post("/submit", data={})).status == 403
        token = await form_token(client)
        assert (await client.post("/submit", data={"csrf_token": token})).status == 200
        assert (await client.post("/wrapped-hook")).status == 200
        assert (await client.post("/nowhere")).status == 404
        assert (await client.post("/plain")).status == 405
        resp = await client.get("/", headers={"Host": "evil.com"})
        assert resp.status == 400
        assert (await client.get("/")).headers["X-Frame-Options"] == "DENY"


def _altered(token: str) -> str:
    """``token`` with its first character changed (the same token 1 time in 64 with a
    fixed replacement)."""
    return ("y" if token[0] == "x" else "x") + token[1:]
