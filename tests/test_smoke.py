from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from aiosite import load_site


async def test_home_page_renders_escaped(make_project) -> None:
    root: Path = make_project()
    site = load_site(root, "test")
    async with TestClient(TestServer(site)) as client:
        resp = await client.get("/")
        assert resp.status == 200
        body = await resp.text()
        assert "&lt;Hello&gt; from Test Site" in body
        assert resp.headers["X-Request-ID"]
