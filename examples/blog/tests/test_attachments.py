"""Files attached to posts: uploaded with the post form, images shown in the post, other
files downloaded, refused types and sizes, removal, and who may see a draft's files."""

import struct
import zlib
from pathlib import Path

import pytest
from blogsite.blog.attachments import ATTACHMENTS_MAX_SIZE
from blogsite.blog.models import Attachment, Post
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from support import AddPosts, AddUser, Client, LogIn, PostForm

from aiosite.contrib.auth import User
from aiosite.testing import csrf_token

POST = {"title": "With files", "slug": "with-files", "body": "See below.", "published": "on"}
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


def png() -> bytes:
    """A real 1x1 PNG: its signature is what the upload check reads."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x24\x58\xd3\xff")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def stored_files(media_root: Path) -> list[Path]:
    return sorted(path for path in media_root.rglob("*") if path.is_file())


async def attachments(db: AsyncSession) -> list[Attachment]:
    statement = select(Attachment).order_by(Attachment.id).execution_options(populate_existing=True)
    return list((await db.execute(statement)).scalars())


@pytest.fixture(autouse=True)
async def logged_in(ada: User, log_in: LogIn) -> None:
    await log_in("ada")


async def test_an_image_is_shown_in_the_post_and_a_pdf_is_a_download(
    db: AsyncSession, client: Client, post_form: PostForm, media_root: Path
) -> None:
    image = png()
    files = [
        ("attachments", "Holiday photo.PNG", image, "image/png"),
        ("attachments", "Slides (final).pdf", PDF, "application/pdf"),
    ]
    resp = await post_form("/blog/new", POST, files)
    assert resp.status == 303, await resp.text()

    photo, slides = await attachments(db)
    assert (photo.filename, photo.content_type, photo.size) == (
        "Holiday photo.PNG",
        "image/png",
        len(image),
    )
    assert (slides.filename, slides.content_type) == ("Slides (final).pdf", "application/pdf")
    # Stored under the blog's folder, with the extension of the checked type.
    assert photo.stored_name.startswith("blog/")
    assert photo.stored_name.endswith(".png")
    assert stored_files(media_root) == sorted(
        [media_root / photo.stored_name, media_root / slides.stored_name]
    )

    html = await (await client.get("/blog/with-files")).text()
    assert (
        f'<img src="/blog/attachments/{photo.id}" alt="Holiday photo.PNG" loading="lazy">' in html
    )
    assert f'<a href="/blog/attachments/{slides.id}">Slides (final).pdf</a>' in html
    assert f"application/pdf, {len(PDF)} bytes" in html

    resp = await client.get(f"/blog/attachments/{photo.id}")
    assert resp.status == 200
    assert resp.content_type == "image/png"
    assert resp.headers["Content-Disposition"].startswith("inline")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert await resp.read() == image

    resp = await client.get(f"/blog/attachments/{slides.id}")
    assert resp.status == 200
    assert resp.content_type == "application/pdf"
    assert resp.headers["Content-Disposition"] == 'attachment; filename="Slides (final).pdf"'
    assert await resp.read() == PDF


async def test_a_type_not_accepted_is_refused_and_nothing_is_stored(
    db: AsyncSession, client: Client, post_form: PostForm, media_root: Path
) -> None:
    page = ("attachments", "page.html", b"<script>alert(1)</script>", "text/html")
    resp = await post_form("/blog/new", POST, [page])
    assert resp.status == 415
    html = await resp.text()
    # The site's error page, which names the file and the accepted types.
    assert "<h1>Unsupported Media Type</h1>" in html
    assert "&#39;page.html&#39; was refused: text/html is not accepted." in html
    assert "Accepted types: image/png, image/jpeg, image/gif, image/webp" in html
    assert "Nothing was saved." in html

    # A program that calls itself a PNG is found out by its first bytes.
    program = ("attachments", "cat.png", b"MZ\x90\x00\x03" + b"\x00" * 59, "image/png")
    resp = await post_form("/blog/new", POST, [program])
    assert resp.status == 415
    assert (await db.execute(select(Post))).first() is None
    assert stored_files(media_root) == []


async def test_more_than_the_limit_is_413_and_nothing_is_stored(
    db: AsyncSession, client: Client, post_form: PostForm, media_root: Path
) -> None:
    notes = ("attachments", "notes.txt", b"a" * 100, "text/plain")
    big = ("attachments", "big.txt", b"b" * (ATTACHMENTS_MAX_SIZE - 99), "text/plain")
    resp = await post_form("/blog/new", POST, [notes, big])
    assert resp.status == 413
    assert "this form accepts files of at most 5 MiB in all" in await resp.text()
    assert (await db.execute(select(Post))).first() is None
    # The first file was stored whole before the second broke the limit: gone too.
    assert stored_files(media_root) == []


async def test_files_of_a_form_with_errors_are_not_kept(
    db: AsyncSession, client: Client, post_form: PostForm, media_root: Path
) -> None:
    photo = ("attachments", "photo.png", png(), "image/png")
    resp = await post_form("/blog/new", {**POST, "title": ""}, [photo])
    assert resp.status == 400
    html = await resp.text()
    assert '<a href="#attachments">Choose the files again' in html
    assert 'aria-describedby="attachments-hint attachments-error" aria-invalid="true"' in html
    assert stored_files(media_root) == []
    assert await attachments(db) == []


async def test_files_are_added_and_removed_on_edit(
    db: AsyncSession, client: Client, post_form: PostForm, media_root: Path
) -> None:
    first = ("attachments", "first.txt", b"First file.\n", "text/plain")
    assert (await post_form("/blog/new", POST, [first])).status == 303
    (old,) = await attachments(db)

    page = await (await client.get("/blog/with-files/edit")).text()
    assert "<legend>Attached files</legend>" in page
    assert (f'<input id="remove-{old.id}" name="remove" type="checkbox" value="{old.id}">') in page
    assert (
        f'<label for="remove-{old.id}">Remove<span class="visually-hidden"> first.txt</span>'
    ) in page

    second = ("attachments", "second.txt", b"Second file.\n", "text/plain")
    resp = await post_form("/blog/with-files/edit", POST, [second], remove=[old.id, 99999])
    assert resp.status == 303
    (new,) = await attachments(db)
    assert new.filename == "second.txt"
    # The removed attachment's file is gone with its row.
    assert stored_files(media_root) == [media_root / new.stored_name]
    assert (await client.get(f"/blog/attachments/{old.id}")).status == 404


async def test_a_drafts_files_are_seen_by_its_author_only(
    db: AsyncSession,
    client: Client,
    post_form: PostForm,
    add_user: AddUser,
    log_in: LogIn,
) -> None:
    photo = ("attachments", "photo.png", png(), "image/png")
    draft = {key: value for key, value in POST.items() if key != "published"}
    assert (await post_form("/blog/new", draft, [photo])).status == 303
    (attachment,) = await attachments(db)
    path = f"/blog/attachments/{attachment.id}"
    assert (await client.get(path)).status == 200

    await add_user("bob")
    await log_in("bob")
    assert (await client.get(path)).status == 404

    await client.post("/auth/logout", data={"csrf_token": await csrf_token(client)})
    assert (await client.get(path)).status == 404


async def test_no_file_can_be_added_to_someone_elses_post(
    db: AsyncSession,
    client: Client,
    post_form: PostForm,
    add_posts: AddPosts,
    add_user: AddUser,
    log_in: LogIn,
    media_root: Path,
) -> None:
    await add_posts(1)  # by ada
    await add_user("bob")
    await log_in("bob")
    photo = ("attachments", "photo.png", png(), "image/png")
    resp = await post_form("/blog/post-1/edit", {"title": "Mine", "body": "x"}, [photo])
    assert resp.status == 403
    assert stored_files(media_root) == []
    count = await db.scalar(select(func.count()).select_from(Attachment))
    assert count == 0


async def test_a_missing_attachment_is_404(db: AsyncSession, client: Client) -> None:
    # The last is more than the id column holds: still no such attachment, not a 500.
    paths = ("/blog/attachments/1", "/blog/attachments/1234567890", f"/blog/attachments/{2**64}")
    for path in paths:
        assert (await client.get(path)).status == 404, path
