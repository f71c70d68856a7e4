"""The demo content loads with `aiosite db seed` (as `make demo` runs it) and fills the blog."""

import asyncio
import os
import sys
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession
from support import Client, LogIn, PostForm, form_token

from aiosite import Settings

DEMO = "blogsite/blog/fixtures/demo.yaml"
# The demo accounts' password, as the fixture file and the README say.
DEMO_PASSWORD = "aiosite-demo"  # noqa: S105


async def seed(settings: Settings, project: Path) -> str:
    # The command runs on the test database, in a process of its own like `make demo`'s.
    env = {**os.environ, "AIOSITE_ENV": "test", "AIOSITE_DATABASE__URL": settings.database.url}
    if settings.database.schema_name:
        env["AIOSITE_DATABASE__SCHEMA_NAME"] = settings.database.schema_name
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "blogsite",
        "db",
        "seed",
        DEMO,
        cwd=project,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_demo_content_fills_three_pages(
    db: AsyncSession,
    client: Client,
    site_settings: Settings,
    aiosite_project_dir: Path,
    post_form: PostForm,
    log_in: LogIn,
) -> None:
    report = await seed(site_settings, aiosite_project_dir)
    assert "auth.User: 7 created" in report
    assert "blog.Post: 25 created" in report
    assert "blog.Comment: 12 created" in report

    html = await (await client.get("/blog/")).text()
    assert "Posts 1\u201310 of 23, newest first." in html  # two of the 25 are drafts
    assert (await client.get("/blog/?page=3")).status == 200
    assert (await client.get("/blog/?page=4")).status == 404
    hello = await (await client.get("/blog/hello-aiosite")).text()
    assert "3 comments" in hello
    assert '&middot; <span class="author">ada</span>' in hello
    assert "<strong>margaret</strong>" in hello
    api = await (await client.get("/api/posts?per_page=100")).json()
    assert api["total"] == 23
    assert len({tag for item in api["items"] for tag in item["tags"]}) == 8

    # The demo accounts log in with the documented password; ada is staff.
    await log_in("ada", password=DEMO_PASSWORD)
    grace_s = await (await client.get("/blog/one-project-many-apps")).text()
    assert '<span class="author">grace</span>' in grace_s
    assert "Edit this post" in grace_s

    # New rows get fresh ids after rows that were loaded with theirs.
    data = {"title": "After the seed", "body": "Text.", "published": "on"}
    resp = await post_form("/blog/new", data)
    assert resp.status == 303
    page = await (await client.get("/blog/hello-aiosite")).text()
    comment = {"body": "Hi", "csrf_token": form_token(page)}
    resp = await client.post("/blog/hello-aiosite/comments", data=comment, allow_redirects=False)
    assert resp.headers["Location"] == "/blog/hello-aiosite#comment-13"
