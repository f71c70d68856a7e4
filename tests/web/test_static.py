"""Static files: several roots, caching headers, and no way out of the roots."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import ProjectFactory, site_client

FILES = {
    "PKG/static/site.css": "project-wide",
    "PKG/static/home/override.css": "from the project",
    "PKG/home/static/home/override.css": "from the app",
    "PKG/home/static/home/.hidden": "hidden",
    "PKG/home/static/home/app.js": "console.log(1)",
}


async def raw_get(client: TestClient, raw_path: str) -> int:  # type: ignore[type-arg]
    """Send the path exactly as given (no client-side normalisation); return the status."""
    assert client.server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    writer.write(
        f"GET {raw_path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
    )
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return int(status_line.split()[1])


async def test_serves_from_project_and_apps_with_cache_headers(
    make_project: ProjectFactory,
) -> None:
    root = make_project(FILES)
    async with site_client(root, "production") as client:
        resp = await client.get("/static/site.css")
        assert resp.status == 200
        assert resp.content_type == "text/css"
        assert await resp.text() == "project-wide"
        assert resp.headers["Cache-Control"] == "public, max-age=3600"
        etag = resp.headers["ETag"]
        assert resp.headers["Last-Modified"]
        again = await client.get("/static/site.css", headers={"If-None-Match": etag})
        assert again.status == 304
        js = await client.get("/static/home/app.js")
        assert js.status == 200
        assert "javascript" in js.content_type


async def test_project_overrides_app_static(make_project: ProjectFactory) -> None:
    root = make_project(FILES)
    async with site_client(root) as client:
        assert await (await client.get("/static/home/override.css")).text() == "from the project"


async def test_debug_mode_asks_browsers_to_revalidate(make_project: ProjectFactory) -> None:
    root = make_project(FILES)
    async with site_client(root, "development") as client:
        resp = await client.get("/static/site.css")
        assert resp.headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize(
    "raw_path",
    [
        "/static/../config/default.yaml",
        "/static/%2e%2e/config/default.yaml",
        "/static/%2E%2E/%2E%2E/config/default.yaml",
        "/static/home/..%2f..%2f..%2fconfig/default.yaml",
        "/static/home/..%5c..%5cconfig%5cdefault.yaml",
        "/static/home\\..\\..\\secret.txt",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/static/home/.hidden",
        "/static/home/app.js%00.css",
        "/static/C:/Windows/win.ini",
        "/static/link/secret.txt",
        "/static/linkfile.txt",
        "/static/nothing-here.css",
    ],
)
async def test_no_request_reads_outside_the_roots(
    make_project: ProjectFactory, raw_path: str
) -> None:
    root = make_project(FILES)
    outside = root / "secret.txt"
    outside.write_text("top secret")
    static_root = next(root.glob("proj_*/static"))
    os.symlink(root, static_root / "link")
    os.symlink(outside, static_root / "linkfile.txt")
    async with site_client(root) as client:
        status = await raw_get(client, raw_path)
        assert status in (400, 403, 404), status
        assert "top secret" not in await (await client.get(raw_path)).text()


async def test_symlink_inside_the_root_is_allowed(make_project: ProjectFactory) -> None:
    root = make_project(FILES)
    static_root = next(root.glob("proj_*/static"))
    os.symlink(static_root / "site.css", static_root / "alias.css")
    async with site_client(root) as client:
        assert await (await client.get("/static/alias.css")).text() == "project-wide"


async def test_static_serving_can_be_off(make_project: ProjectFactory) -> None:
    root = make_project(
        FILES, env_yaml={"production": "static:\n  serve: false\n  manifest: false\n"}
    )
    async with site_client(root, "production") as client:
        assert (await client.get("/static/site.css")).status == 404


def test_root_listing(make_project: ProjectFactory) -> None:
    from aiosite import load_site
    from aiosite.web.static import STATIC_FILES

    root = make_project(FILES)
    files = load_site(root, "test")[STATIC_FILES]
    assert [p.relative_to(root.resolve()).as_posix().split("/", 1)[1] for p in files.roots] == [
        "static",
        "home/static",
    ]
    assert files.find("home/override.css") == (Path(files.roots[0]) / "home/override.css")


async def test_static_url_and_settings_of_from_a_handler(make_project: ProjectFactory) -> None:
    routes = """
        from aiohttp import web
        from aiosite import Routes, json_response, settings_of, static_url
        routes = Routes()

        @routes.get("/", name="index")
        async def index(request: web.Request) -> web.Response:
            return json_response({
                "css": static_url(request, "/home/site.css"),
                "css_from_app": static_url(request.app, "home/site.css"),
                "site": settings_of(request).site.name,
                "same": settings_of(request) is settings_of(request.app),
            })
    """
    root = make_project(
        {"PKG/home/routes.py": routes}, env_yaml={"test": "static:\n  url: /assets\n"}
    )
    async with site_client(root) as client:
        data = await (await client.get("/")).json()
        assert data == {
            "css": "/assets/home/site.css",
            "css_from_app": "/assets/home/site.css",
            "site": "Test Site",
            "same": True,
        }
        assert (await client.get("/assets/home/site.css")).status == 200
