"""Security headers on pages, error pages, static files and plain responses."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiosite.settings import SecuritySettings
from tests.conftest import ProjectFactory, site_client
from tests.security.support import FILES

DEFAULT_CSP = SecuritySettings().content_security_policy
HSTS_YAML = """\
security:
  trust_proxy_headers: true
  hsts_include_subdomains: true
  hsts_preload: true
"""


@pytest.fixture
def project(make_project: ProjectFactory) -> Path:
    return make_project(FILES)


async def test_html_pages_get_every_header(project: Path) -> None:
    async with site_client(project) as client:
        for path in ("/", "/nowhere"):
            resp = await client.get(path)
            assert resp.content_type == "text/html", path
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            assert resp.headers["Referrer-Policy"] == "same-origin"
            assert resp.headers["Content-Security-Policy"] == DEFAULT_CSP
            assert resp.headers["X-Frame-Options"] == "DENY"
            assert "Strict-Transport-Security" not in resp.headers


async def test_other_responses_get_the_headers_for_every_response(project: Path) -> None:
    async with site_client(project) as client:
        for path in ("/plain", "/static/home/site.css", "/token"):
            resp = await client.get(path)
            assert resp.status == 200, path
            assert resp.headers["X-Content-Type-Options"] == "nosniff", path
            assert resp.headers["Referrer-Policy"] == "same-origin", path
            assert "Content-Security-Policy" not in resp.headers, path
            assert "X-Frame-Options" not in resp.headers, path
        # An error page answered in JSON is no HTML page either.
        resp = await client.get("/nowhere", headers={"Accept": "application/json"})
        assert resp.status == 404
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert "Content-Security-Policy" not in resp.headers


async def test_a_header_the_handler_set_wins(project: Path) -> None:
    async with site_client(project) as client:
        resp = await client.get("/own-headers")
        assert resp.headers.getall("X-Frame-Options") == ["SAMEORIGIN"]
        assert resp.headers.getall("Content-Security-Policy") == ["default-src 'none'"]
        assert resp.headers.getall("Referrer-Policy") == ["no-referrer"]
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_hsts_only_over_https_from_a_trusted_proxy(make_project: ProjectFactory) -> None:
    root = make_project(FILES, env_yaml={"test": HSTS_YAML})
    async with site_client(root) as client:
        plain = await client.get("/plain")
        assert "Strict-Transport-Security" not in plain.headers
        assert await plain.text() == "Hello, World!"
        for proto in ("https", "HTTPS", "https, http"):
            resp = await client.get("/plain", headers={"X-Forwarded-Proto": proto})
            assert resp.headers["Strict-Transport-Security"] == (
                "max-age=31536000; includeSubDomains; preload"
            )
        resp = await client.get("/secure", headers={"X-Forwarded-Proto": "https"})
        assert await resp.text() == "secure=True"
        resp = await client.get("/secure", headers={"X-Forwarded-Proto": "http"})
        assert await resp.text() == "secure=False"
        assert "Strict-Transport-Security" not in resp.headers


async def test_forwarded_proto_is_ignored_unless_trusted(project: Path) -> None:
    async with site_client(project) as client:
        resp = await client.get("/secure", headers={"X-Forwarded-Proto": "https"})
        assert await resp.text() == "secure=False"
        assert "Strict-Transport-Security" not in resp.headers


async def test_headers_follow_the_settings(make_project: ProjectFactory) -> None:
    yaml = """\
security:
  content_security_policy: "default-src 'self' https://cdn.example.com"
  frame_options: SAMEORIGIN
  referrer_policy: strict-origin-when-cross-origin
  trust_proxy_headers: true
  hsts_seconds: 600
"""
    root = make_project(FILES, env_yaml={"test": yaml})
    async with site_client(root) as client:
        resp = await client.get("/", headers={"X-Forwarded-Proto": "https"})
        assert resp.headers["Content-Security-Policy"] == (
            "default-src 'self' https://cdn.example.com"
        )
        assert resp.headers["X-Frame-Options"] == "SAMEORIGIN"
        assert resp.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
        assert resp.headers["Strict-Transport-Security"] == "max-age=600"


async def test_null_settings_send_no_header(make_project: ProjectFactory) -> None:
    yaml = """\
security:
  content_security_policy: null
  frame_options: null
  referrer_policy: ""
  trust_proxy_headers: true
  hsts_seconds: 0
"""
    root = make_project(FILES, env_yaml={"test": yaml})
    async with site_client(root) as client:
        resp = await client.get("/", headers={"X-Forwarded-Proto": "https"})
        assert resp.status == 200
        for name in (
            "Content-Security-Policy",
            "X-Frame-Options",
            "Referrer-Policy",
            "Strict-Transport-Security",
        ):
            assert name not in resp.headers, name
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_debug_mode_reports_the_policy_instead_of_enforcing_it(project: Path) -> None:
    async with site_client(project, "development") as client:
        resp = await client.get("/")
        assert resp.status == 200
        assert "Content-Security-Policy" not in resp.headers
        assert resp.headers["Content-Security-Policy-Report-Only"] == DEFAULT_CSP
        assert resp.headers["X-Frame-Options"] == "DENY"
        # The toolbar's own pages run inline scripts: no policy there at all.
        toolbar = await client.get("/_debugtoolbar")
        assert toolbar.status == 200
        assert toolbar.content_type == "text/html"
        assert "Content-Security-Policy-Report-Only" not in toolbar.headers
        assert toolbar.headers["X-Content-Type-Options"] == "nosniff"


async def test_the_server_header_names_no_versions_and_can_be_set(
    make_project: ProjectFactory,
) -> None:
    plain = make_project(files=FILES)
    named = make_project(files=FILES, env_yaml={"test": "security:\n  server_header: Example\n"})
    async with site_client(plain) as client:
        assert (await client.get("/")).headers["Server"] == "aiosite"
        assert (await client.get("/nowhere")).headers["Server"] == "aiosite"
    async with site_client(named) as client:
        assert (await client.get("/")).headers["Server"] == "Example"
