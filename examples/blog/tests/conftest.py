"""aiosite's pytest plugin (installed with aiosite) provides the fixtures:

- ``site``: this project's site, built with config/default.yaml + config/test.yaml, on a
  test database of the run's own (migrated once, never the development database);
- ``client``: an aiohttp test client on it (``await client.get("/")``);
- ``db``: an ``AsyncSession`` on the test database, every table emptied first. Add rows,
  ``await db.commit()``, then request pages: the site sees what the test committed.

The fixtures below keep uploads out of var/media, make accounts and blog rows, and log
the client in the way a browser does.
"""

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import ClientResponse, FormData
from blogsite.blog.models import Post, Tag
from sqlalchemy.ext.asyncio import AsyncSession
from support import (
    PASSWORD,
    AddPosts,
    AddTag,
    AddUser,
    Client,
    LogIn,
    PostForm,
    Upload,
    form_token,
)

from aiosite import Settings
from aiosite.contrib.auth import Passwords, User
from aiosite.testing import csrf_token
from aiosite.uploads import UploadSettings
from aiosite.uploads import media_root as media_root_of

START = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def site_settings(site_settings: Settings, tmp_path: Path) -> Settings:
    """The test settings with uploads stored in the test's own folder."""
    uploads = site_settings.section(UploadSettings).model_copy(
        update={"media_root": tmp_path / "media"}
    )
    return site_settings.model_copy(update={"uploads": uploads})


@pytest.fixture
def media_root(site_settings: Settings) -> Path:
    return media_root_of(site_settings)


@pytest.fixture
def add_user(db: AsyncSession, site_settings: Settings) -> AddUser:
    """``await add_user("grace", staff=True)``: an account with the password PASSWORD
    (or ``password=``), hashed with the test settings' fast hasher (config/test.yaml)."""
    passwords = Passwords(site_settings)

    async def add(username: str, *, staff: bool = False, password: str = PASSWORD) -> User:
        user = User(
            username=username,
            email=f"{username}@example.com",
            is_staff=staff,
            password=await passwords.hash(password),
        )
        db.add(user)
        await db.commit()
        return user

    return add


@pytest.fixture
async def ada(add_user: AddUser) -> User:
    """The author of the posts ``add_posts`` makes."""
    return await add_user("ada")


@pytest.fixture
def log_in(client: Client) -> LogIn:
    """``await log_in("ada")``: the client logs in through the login form, as a browser
    does (the form's CSRF token, then the session cookie in the client's cookie jar);
    ``password=`` for an account that has another than PASSWORD."""

    async def log_in(username: str, *, password: str = PASSWORD) -> None:
        page = await (await client.get("/auth/login")).text()
        data = {"username": username, "password": password, "csrf_token": form_token(page)}
        resp = await client.post("/auth/login", data=data, allow_redirects=False)
        assert resp.status == 303, await resp.text()

    return log_in


@pytest.fixture
def add_posts(db: AsyncSession, ada: User) -> AddPosts:
    """``await add_posts(25)``: posts "Post 1" (oldest) to "Post 25" by ada, a day apart,
    committed; ``published=False`` for drafts, ``tags=[tag]``, ``author=user`` (or None),
    ``first=26`` to go on."""

    async def add(
        count: int,
        *,
        published: bool = True,
        tags: Sequence[Tag] = (),
        author: User | None = ada,
        first: int = 1,
    ) -> list[Post]:
        posts = [
            Post(
                title=f"Post {n}",
                slug=f"post-{n}",
                body=f"The first paragraph of post {n}.\n\nThe second paragraph.",
                author_id=author.id if author is not None else None,
                published=published,
                created=START + timedelta(days=n),
                tags=list(tags),
            )
            for n in range(first, first + count)
        ]
        db.add_all(posts)
        await db.commit()
        return posts

    return add


@pytest.fixture
def add_tag(db: AsyncSession) -> AddTag:
    async def add(name: str, slug: str) -> Tag:
        tag = Tag(name=name, slug=slug)
        db.add(tag)
        await db.commit()
        return tag

    return add


@pytest.fixture
def post_form(client: Client) -> PostForm:
    """``await post_form("/blog/new", {"title": ...}, files=[upload])``: the post form as
    a browser sends it, multipart with the CSRF token first (the upload reader checks it
    before it stores any file), then the fields, the ids to ``remove``, and the files."""

    async def post(
        path: str,
        fields: Mapping[str, str],
        files: Sequence[Upload] = (),
        *,
        remove: Sequence[int] = (),
    ) -> ClientResponse:
        # As browsers do: multipart even without a file, file names unquoted.
        form = FormData(quote_fields=False, default_to_multipart=True)
        form.add_field("csrf_token", await csrf_token(client))
        for name, value in fields.items():
            form.add_field(name, value)
        for attachment_id in remove:
            form.add_field("remove", str(attachment_id))
        for field, filename, content, content_type in files:
            form.add_field(field, content, filename=filename, content_type=content_type)
        return await client.post(path, data=form, allow_redirects=False)

    return post
