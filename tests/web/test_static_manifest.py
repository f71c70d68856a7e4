"""The static manifest in production: hashed URLs, far-future headers on hashed files, and
startup errors instead of broken pages when the manifest is missing or incomplete."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest

from aiosite import load_site
from aiosite.exceptions import ImproperlyConfigured
from tests.cli_runner import invoke
from tests.conftest import ProjectFactory, site_client

CSS = b"body { color: #123; }\n"
HASHED = f"home/site.{hashlib.sha256(CSS).hexdigest()[:12]}.css"
IMMUTABLE = "public, max-age=31536000, immutable"
ROUTES = """\
from aiohttp import web

from aiosite import Routes, json_response, render, static_url

routes = Routes()


@routes.get("/", name="index")
async def index(request: web.Request) -> web.Response:
    return await render(request, "home/index.html", {})


@routes.get("/dynamic/{name}", name="dynamic")
async def dynamic(request: web.Request) -> web.Response:
    return await render(request, "home/dynamic.html", {"name": request.match_info["name"]})


@routes.get("/url.json", name="url")
async def url(request: web.Request) -> web.Response:
    return json_response({"css": static_url(request, "home/site.css")})
"""
# null, the default: on outside development and test. (The test projects turn it off in
# production unless told otherwise.)
PRODUCTION = {"production": "static:\n  manifest: null\n"}
FILES = {
    "PKG/home/routes.py": ROUTES,
    "PKG/home/templates/home/index.html": (
        '<link rel="stylesheet" href="{{ static(\'home/site.css\') }}">'
    ),
    "PKG/home/templates/home/dynamic.html": "{{ static(name) }}",
}


def _collect(capsys: pytest.CaptureFixture[str], root: Path) -> None:
    result = invoke(capsys, ["--project", str(root), "--env", "production", "collectstatic"])
    assert result.code == 0, result


async def test_hashed_urls_and_far_future_headers(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_project(FILES, env_yaml=PRODUCTION)
    _collect(capsys, root)
    async with site_client(root, "production") as client:
        page = await client.get("/")
        assert await page.text() == f'<link rel="stylesheet" href="/static/{HASHED}">'
        assert await (await client.get("/url.json")).json() == {"css": f"/static/{HASHED}"}
        hashed = await client.get(f"/static/{HASHED}")
        assert hashed.status == 200
        assert await hashed.read() == CSS
        assert hashed.headers["Cache-Control"] == IMMUTABLE
        plain = await client.get("/static/home/site.css")
        assert plain.status == 200
        assert plain.headers["Cache-Control"] == "public, max-age=3600"


async def test_files_are_served_from_static_root(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_project(FILES, env_yaml=PRODUCTION)
    _collect(capsys, root)
    # Changed after collectstatic: production serves what was collected.
    next(root.glob("proj_*/home/static/home/site.css")).write_text("changed")
    async with site_client(root, "production") as client:
        assert await (await client.get("/static/home/site.css")).read() == CSS
        assert (await client.get("/static/staticfiles.json")).status == 200
        assert (await client.get("/static/home/missing.css")).status == 404


def test_missing_manifest_stops_the_site_from_being_built(make_project: ProjectFactory) -> None:
    root = make_project(FILES, env_yaml=PRODUCTION)
    with pytest.raises(ImproperlyConfigured) as error:
        load_site(root, "production")
    assert "static_root/staticfiles.json does not exist" in str(error.value)
    assert "run `aiosite collectstatic`" in str(error.value)


async def test_a_site_without_static_folders_needs_no_manifest(
    make_project: ProjectFactory,
) -> None:
    # An API has nothing to collect: it starts in production without collectstatic, and
    # a static() call still fails loudly rather than linking to a 404.
    api = {
        "PKG/home/__init__.py": 'from aiosite import App\n\napp = App("home", prefix="")\n',
        "PKG/home/routes.py": ROUTES,
    }
    root = make_project(api, env_yaml=PRODUCTION, with_home=False)
    async with site_client(root, "production") as client:
        assert (await client.get("/static/anything.css")).status == 404
        assert (await client.get("/url.json")).status == 500


async def test_template_naming_a_file_missing_from_the_manifest_stops_startup(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_project(FILES, env_yaml=PRODUCTION)
    _collect(capsys, root)
    package = next(root.glob("proj_*/home"))
    (package / "templates/home/later.html").write_text("\n\n{{ static('home/later.css') }}")
    (package / "static/home/later.css").write_text("p {}")  # added after collectstatic
    with pytest.raises(ImproperlyConfigured) as error:
        async with site_client(root, "production"):
            pass
    message = str(error.value)
    shown = (package / "templates/home/later.html").relative_to(root)
    assert f"template {shown}:3: static('home/later.css'): not in the static manifest" in message
    assert "aiosite collectstatic" in message
    _collect(capsys, root)
    async with site_client(root, "production") as client:
        assert (await client.get("/")).status == 200


async def test_non_literal_path_missing_from_the_manifest_is_a_clear_error(
    make_project: ProjectFactory,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    root = make_project(FILES, env_yaml=PRODUCTION)
    _collect(capsys, root)
    async with site_client(root, "production") as client:
        found = await client.get("/dynamic/home%2Fsite.css")
        assert await found.text() == f"/static/{HASHED}"
        with caplog.at_level(logging.ERROR):
            missing = await client.get("/dynamic/nope.css")
        assert missing.status == 500
    assert "static('nope.css'): not in the static manifest static_root/staticfiles.json" in (
        caplog.text
    )
    assert "run `aiosite collectstatic`" in caplog.text


async def test_development_is_unchanged(make_project: ProjectFactory) -> None:
    root = make_project(FILES)  # no collectstatic, no manifest
    async with site_client(root, "development") as client:
        page = await client.get("/")
        assert await page.text() == '<link rel="stylesheet" href="/static/home/site.css">'
        css = await client.get("/static/home/site.css")
        assert css.headers["Cache-Control"] == "no-cache"
        assert await (await client.get("/dynamic/nope.css")).text() == "/static/nope.css"


async def test_manifest_can_be_turned_off_in_production(make_project: ProjectFactory) -> None:
    root = make_project(FILES, env_yaml={"production": "static:\n  manifest: false\n"})
    async with site_client(root, "production") as client:
        assert await (await client.get("/url.json")).json() == {"css": "/static/home/site.css"}


async def test_manifest_can_be_turned_on_in_development_with_other_settings(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    yaml = "static:\n  manifest: true\n  root: public\n  immutable_max_age: 600\n"
    root = make_project(FILES, env_yaml={"test": yaml})
    result = invoke(capsys, ["--project", str(root), "--env", "test", "collectstatic"])
    assert "into public/" in result.out
    async with site_client(root, "test") as client:
        hashed = await client.get(f"/static/{HASHED}")
        assert hashed.headers["Cache-Control"] == "public, max-age=600, immutable"


def test_check_reports_templates_against_the_manifest(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_project(FILES, env_yaml=PRODUCTION)
    _collect(capsys, root)
    templates = next(root.glob("proj_*/home/templates/home"))
    (templates / "new.html").write_text("{{ static('home/new.css') }}\n{{ static('gone.css') }}")
    (templates.parent.parent / "static/home/new.css").write_text("p {}")
    result = invoke(capsys, ["--project", str(root), "--env", "production", "check"])
    assert result.code == 1
    shown = (templates / "new.html").relative_to(root)
    assert (
        f"error: template {shown}:1: static('home/new.css'): not in the static manifest "
        "static_root/staticfiles.json" in result.out
    )
    assert f"error: template {shown}:2: static('gone.css'): no such file in the static" in (
        result.out
    )
