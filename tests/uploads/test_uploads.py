"""File uploads through HTTP: limits, names, content checks, serving, cleanup."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient

from aiosite.exceptions import ImproperlyConfigured
from aiosite.keys import CSRF_CHECK
from aiosite.site import load_site
from aiosite.uploads import accepts_uploads
from tests.conftest import ProjectFactory, site_client

MAX_SIZE = 1000
FORM_SIZE = 1024  # server.client_max_size: text fields and multipart framing
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 48

APP_INIT = """\
from aiosite import App

app = App("media", prefix="")
"""

ROUTES = """\
from aiohttp import web

from wtforms import StringField, validators

from aiosite import Routes, json_response, render
from aiosite.forms import Form, FormInput
from aiosite.uploads import accepts_uploads, file_response, read_upload_form

routes = Routes()


def described(form):
    return {
        "fields": [[k, v] for k, v in form.fields.items()],
        "files": [
            {"field": f, "name": u.name, "filename": u.filename,
             "content_type": u.content_type, "size": u.size}
            for f, u in form.files.items()
        ],
    }


@routes.get("/upload", name="form")
async def upload_form(request):
    return await render(request, "media/form.html")


@routes.post("/upload", name="upload")
@accepts_uploads(max_size=1000, allowed_types=["image/png", "text/plain", "image/jpeg"])
async def upload(request):
    return json_response(described(await read_upload_form(request)))


@routes.post("/two", name="two")
@accepts_uploads(max_files=2, folder="docs/two")
async def two(request):
    return json_response(described(await read_upload_form(request)))


@routes.post("/fail", name="fail")
@accepts_uploads()
async def fail(request):
    await read_upload_form(request)
    raise web.HTTPBadRequest(text="the title is missing")


@routes.view("/view", name="view")
class UploadView(web.View):
    @accepts_uploads(max_size=10, allowed_types=["text/plain"], folder="views")
    async def post(self):
        return json_response(described(await read_upload_form(self.request)))


class DocumentForm(Form):
    title = StringField("Title", [validators.InputRequired()])


@routes.post("/document", name="document")
@accepts_uploads(allowed_types=["text/plain"])
async def document(request):
    upload = await read_upload_form(request)
    form = DocumentForm(formdata=FormInput(upload.fields))
    if not form.validate():
        await upload.discard()
        return json_response({"errors": form.errors}, status=400)
    return json_response({"title": form.title.data, "file": upload.files["doc"].name})


@routes.get("/media/{name:.+}", name="media")
async def media(request):
    return await file_response(
        request,
        request.match_info["name"],
        filename=request.query.get("as"),
        inline=request.query.get("inline") == "1",
    )
"""

FORM = """\
<form method="post" enctype="multipart/form-data">{{ csrf_input() }}
<input type="file" name="file"></form>
"""

FILES = {
    "PKG/media/__init__.py": APP_INIT,
    "PKG/media/routes.py": ROUTES,
    "PKG/media/templates/media/form.html": FORM,
}
MAX_FIELDS = 5
SETTINGS = (
    f"uploads:\n  max_size: {MAX_SIZE}\n  max_fields: {MAX_FIELDS}\n"
    f"server:\n  client_max_size: {FORM_SIZE}\n"
)


@pytest.fixture
def project(make_project: ProjectFactory) -> Path:
    return make_project(FILES, apps=["media"], env_yaml={"test": SETTINGS})


def stored(root: Path) -> list[Path]:
    media = root / "var" / "media"
    return sorted(p for p in media.rglob("*") if p.is_file()) if media.exists() else []


async def token(client: TestClient) -> str:  # type: ignore[type-arg]
    page = await (await client.get("/upload")).text()
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match is not None, page
    return match.group(1)


async def form_with(
    client: TestClient,  # type: ignore[type-arg]
    *files: tuple[str, bytes, str],
    field: str = "file",
    fields: dict[str, str] | None = None,
) -> FormData:
    """A multipart form with the CSRF token first, as csrf_input() puts it."""
    data = FormData(default_to_multipart=True)
    data.add_field("csrf_token", await token(client))
    for name, value in (fields or {}).items():
        data.add_field(name, value)
    for filename, content, content_type in files:
        data.add_field(field, content, filename=filename, content_type=content_type)
    return data


def multipart(parts: list[tuple[str, bytes]], boundary: str = "xYzZY") -> tuple[bytes, str]:
    """A multipart body from raw part headers, exactly as given (names with NUL...)."""
    body = b""
    for headers, content in parts:
        body += f"--{boundary}\r\n{headers}\r\n\r\n".encode("utf-8", "surrogateescape")
        body += content + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def file_part(filename: str, content_type: str = "text/plain") -> str:
    quoted = filename.replace("\\", "\\\\").replace('"', '\\"')  # a quoted-string
    return (
        f'Content-Disposition: form-data; name="file"; filename="{quoted}"\r\n'
        f"Content-Type: {content_type}"
    )


def token_part(value: str) -> tuple[str, bytes]:
    return 'Content-Disposition: form-data; name="csrf_token"', value.encode()


# --- storing --------------------------------------------------------------------


async def test_upload_at_exactly_the_limit_is_stored_under_a_dated_folder(project: Path) -> None:
    content = b"a" * MAX_SIZE
    async with site_client(project) as client:
        data = await form_with(client, ("notes.txt", content, "text/plain"), fields={"t": "Hi"})
        resp = await client.post("/upload", data=data)
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    (uploaded,) = body["files"]
    today = datetime.now(UTC).strftime("%Y/%m/%d")
    assert uploaded == {
        "field": "file",
        "name": f"uploads/{today}/notes.txt",
        "filename": "notes.txt",
        "content_type": "text/plain",
        "size": MAX_SIZE,
    }
    # The token is the CSRF check's, not a field of the form.
    assert body["fields"] == [["t", "Hi"]]
    assert stored(project) == [project / "var/media" / uploaded["name"]]
    assert (project / "var/media" / uploaded["name"]).read_bytes() == content


async def test_one_byte_over_the_limit_is_413_and_nothing_is_written(project: Path) -> None:
    async with site_client(project) as client:
        data = await form_with(
            client,
            ("first.txt", b"b" * 10, "text/plain"),
            ("second.txt", b"a" * (MAX_SIZE - 9), "text/plain"),
        )
        resp = await client.post("/upload", data=data)
        assert resp.status == 413
        assert "at most 1000 bytes" in await resp.text()
    # The first file was stored whole before the second broke the limit: gone too.
    assert stored(project) == []


async def test_declared_content_length_over_the_limit_is_413_before_reading(
    project: Path,
) -> None:
    async with site_client(project) as client:
        assert client.server.port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
        # Headers only: a server that read the body would wait for it forever.
        writer.write(
            b"POST /upload HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            b"Content-Type: multipart/form-data; boundary=xYzZY\r\n"
            + f"Content-Length: {MAX_SIZE + FORM_SIZE + 1}\r\n\r\n".encode()
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=5)
        writer.close()
        await writer.wait_closed()
    assert status_line.split()[1] == b"413"
    assert stored(project) == []


async def test_chunked_body_over_the_limit_is_413_and_nothing_is_written(project: Path) -> None:
    async with site_client(project) as client:
        head, content_type = multipart([token_part(await token(client))])
        opening = head.removesuffix(b"--xYzZY--\r\n") + b"--xYzZY\r\n"
        opening += file_part("big.txt").encode() + b"\r\n\r\n"

        async def body() -> AsyncIterator[bytes]:
            yield opening
            for _ in range(40):  # 40 * 100 bytes: over the limit, never a Content-Length
                yield b"c" * 100
                await asyncio.sleep(0)
            yield b"\r\n--xYzZY--\r\n"

        resp = await client.post("/upload", data=body(), headers={"Content-Type": content_type})
        assert resp.status == 413
        assert resp.request_info.headers.get("Transfer-Encoding") == "chunked"
    assert stored(project) == []


async def test_a_content_length_smaller_than_the_body_stores_nothing(project: Path) -> None:
    async with site_client(project) as client:
        body, content_type = multipart(
            [token_part(await token(client)), (file_part("lie.txt"), b"e" * 3 * MAX_SIZE)]
        )
        headers = {"Content-Type": content_type, "Content-Length": "400"}
        resp = await client.post("/upload", data=body, headers=headers)
        # The server reads the 400 bytes announced: a body cut short in the file.
        assert resp.status == 400
        assert "malformed" in await resp.text()
    assert stored(project) == []


async def test_multipart_framing_counts_against_the_limit(project: Path) -> None:
    # Three empty fields, each under a large part header: no field or file is large,
    # the body is.
    async with site_client(project) as client:
        padded = 'Content-Disposition: form-data; name="f"\r\nX-Pad: ' + "p" * 1000
        body, content_type = multipart([token_part(await token(client)), *[(padded, b"")] * 3])

        async def chunked() -> AsyncIterator[bytes]:
            yield body

        resp = await client.post("/upload", data=chunked(), headers={"Content-Type": content_type})
        assert resp.status == 413


async def test_a_truncated_body_is_400_and_the_partial_file_is_deleted(project: Path) -> None:
    async with site_client(project) as client:
        body, content_type = multipart(
            [token_part(await token(client)), (file_part("cut.txt"), b"d" * 500)]
        )
        body = body[: -len(b"\r\n--xYzZY--\r\n") - 100]  # the end never comes
        resp = await client.post("/upload", data=body, headers={"Content-Type": content_type})
        assert resp.status == 400
        assert "malformed" in await resp.text()
    assert stored(project) == []


NESTED = (
    'Content-Disposition: form-data; name="files"\r\nContent-Type: multipart/mixed; boundary=inner'
)


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        ("multipart/form-data", b"--x\r\n\r\nx\r\n--x--\r\n", "malformed"),
        ("multipart/form-data; boundary=" + "b" * 71, b"", "malformed"),
        ("multipart/form-data; boundary=xYzZY", b"no boundary anywhere", "malformed"),
        ("multipart/form-data; boundary=xYzZY", multipart([("X-No: name", b"v")])[0], "no field"),
        (
            "multipart/form-data; boundary=xYzZY",
            multipart([(NESTED, b"--inner\r\n\r\nx\r\n--inner--")])[0],
            "Nested",
        ),
        (
            "multipart/form-data; boundary=xYzZY",
            multipart([(file_part("a.txt") + "\r\nContent-Transfer-Encoding: base64", b"eA==")])[0],
            "Content-Transfer-Encoding",
        ),
        (
            "multipart/form-data; boundary=xYzZY",
            multipart([('Content-Disposition: form-data; name="t"', b"\xff")])[0],
            "not UTF-8",
        ),
    ],
)
async def test_malformed_bodies_are_400_and_store_nothing(
    project: Path, content_type: str, body: bytes, message: str
) -> None:
    async with site_client(project) as client:
        headers = {"Content-Type": content_type, "X-CSRF-Token": await token(client)}
        resp = await client.post("/upload", data=body, headers=headers)
        assert resp.status == 400
        assert message in await resp.text()
    assert stored(project) == []


@pytest.mark.parametrize(
    ("raw", "stored_as", "shown_as"),
    [
        ("../../etc/passwd", "passwd.txt", "passwd"),
        ("..\\..\\windows\\x.txt", "x.txt", "x.txt"),
        ("C:\\x.txt", "x.txt", "x.txt"),
        ("C:x.txt", "x.txt", "x.txt"),
        (".htaccess", "htaccess.txt", "htaccess"),
        ("shell.php.txt", "shell-php.txt", "shell.php.txt"),
        ("évil\u202etxt.exe", "eviltxt.txt", "éviltxt.exe"),
        ("Café Menu (1).TXT", "Cafe-Menu-1.txt", "Café Menu (1).TXT"),
        ("文件.txt", "file.txt", "文件.txt"),
        ("con.txt", "file-con.txt", "con.txt"),
        ("a" * 300 + ".txt", "a" * 80 + ".txt", "a" * 196 + ".txt"),
        ("...", "file.txt", "file"),
    ],
)
async def test_file_names_end_up_safe_and_inside_media_root(
    project: Path, raw: str, stored_as: str, shown_as: str
) -> None:
    async with site_client(project) as client:
        body, content_type = multipart(
            [token_part(await token(client)), (file_part(raw), b"hello")]
        )
        resp = await client.post("/upload", data=body, headers={"Content-Type": content_type})
        assert resp.status == 200, await resp.text()
        (uploaded,) = (await resp.json())["files"]
    assert uploaded["name"].rsplit("/", 1)[1] == stored_as
    assert uploaded["filename"] == shown_as
    (path,) = stored(project)
    assert path.resolve().is_relative_to((project / "var/media").resolve())
    assert path.read_bytes() == b"hello"


async def test_nul_and_control_characters_never_reach_the_name(project: Path) -> None:
    encoded = (
        'Content-Disposition: form-data; name="file"; '
        "filename*=UTF-8''a%00b%07c%1b%0d%0a%7f.txt\r\nContent-Type: text/plain"
    )
    async with site_client(project) as client:
        body, content_type = multipart([token_part(await token(client)), (encoded, b"x")])
        resp = await client.post("/upload", data=body, headers={"Content-Type": content_type})
        assert resp.status == 200, await resp.text()
        (uploaded,) = (await resp.json())["files"]
        assert uploaded["name"].endswith("/abc.txt")
        assert uploaded["filename"] == "abc.txt"
        # A raw NUL in a part's header is refused by the parser itself.
        body, content_type = multipart(
            [token_part(await token(client)), (file_part("a\x00b.txt"), b"x")]
        )
        resp = await client.post("/upload", data=body, headers={"Content-Type": content_type})
        assert resp.status == 400
    assert len(stored(project)) == 1


async def test_same_names_never_overwrite_even_at_the_same_moment(project: Path) -> None:
    async with site_client(project) as client:
        contents = [b"first", b"second", b"third", b"fourth"]
        forms = [await form_with(client, ("same.txt", c, "text/plain")) for c in contents]
        first = await client.post("/upload", data=forms[0])
        rest = await asyncio.gather(*(client.post("/upload", data=f) for f in forms[1:]))
        names = [(await r.json())["files"][0]["name"] for r in [first, *rest]]
    assert names[0].endswith("/same.txt")
    assert len(set(names)) == 4
    assert all(re.search(r"/same(-[0-9a-f]{8})?\.txt$", name) for name in names)
    media = project / "var/media"
    assert [(media / name).read_bytes() for name in names] == contents


async def test_files_and_fields_bounded_in_number(project: Path) -> None:
    async with site_client(project) as client:
        data = await form_with(
            client, *[(f"{i}.txt", b"x", "text/plain") for i in range(3)], field="doc"
        )
        resp = await client.post("/two", data=data)
        assert resp.status == 400, await resp.text()
        assert "at most 2" in await resp.text()
        assert stored(project) == []
        fields = {f"f{i}": "v" for i in range(MAX_FIELDS + 1)}
        resp = await client.post("/two", data=await form_with(client, fields=fields))
        assert resp.status == 400
        assert "too many fields" in await resp.text()
        data = await form_with(client, fields={"long": "x" * (FORM_SIZE + 1)})
        resp = await client.post("/two", data=data)
        assert resp.status == 413
        two = await form_with(
            client, ("a.txt", b"1", "text/plain"), ("b.pdf", b"%PDF-1.4\n", "application/pdf")
        )
        resp = await client.post("/two", data=two)
        assert resp.status == 200
        names = [u["name"] for u in (await resp.json())["files"]]
    assert all(name.startswith("docs/two/") for name in names)
    assert names[1].endswith("/b.pdf")


async def test_a_class_based_view_method_takes_uploads(project: Path) -> None:
    async with site_client(project) as client:
        data = await form_with(client, ("v.txt", b"0123456789", "text/plain"))
        resp = await client.post("/view", data=data)
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["files"][0]["name"].startswith("views/")
        data = await form_with(client, ("v.txt", b"0123456789+", "text/plain"))
        resp = await client.post("/view", data=data)
        assert resp.status == 413
        assert "at most 10 bytes" in await resp.text()
    assert len(stored(project)) == 1


async def test_a_form_validates_the_text_fields_of_an_upload(project: Path) -> None:
    async with site_client(project) as client:
        data = await form_with(client, ("d.txt", b"doc", "text/plain"), field="doc")
        resp = await client.post("/document", data=data)
        assert resp.status == 400
        assert await resp.json() == {"errors": {"title": ["This field is required."]}}
        assert stored(project) == []
        data = await form_with(
            client, ("d.txt", b"doc", "text/plain"), field="doc", fields={"title": "Plan"}
        )
        resp = await client.post("/document", data=data)
        assert resp.status == 200
        body = await resp.json()
    assert body["title"] == "Plan"
    assert (project / "var/media" / body["file"]).read_bytes() == b"doc"


# --- content types --------------------------------------------------------------


async def test_a_type_outside_the_allow_list_is_415_naming_the_allowed(project: Path) -> None:
    async with site_client(project) as client:
        data = await form_with(client, ("tool.exe", EXE, "application/x-msdownload"))
        resp = await client.post("/upload", data=data)
        assert resp.status == 415
        text = await resp.text()
    assert "application/x-msdownload is not accepted" in text
    assert "image/png, text/plain, image/jpeg" in text
    assert stored(project) == []


@pytest.mark.parametrize(
    ("content", "declared", "problem"),
    [
        (EXE, "image/png", "its content is application/x-msdownload"),
        (b"just some text, not a picture", "image/png", "its content is not image/png"),
        (PNG, "image/jpeg", "its content is image/png"),
        (EXE, "text/plain", "its content is application/x-msdownload"),
        (b"caf\xe9 latin-1", "text/plain", "it is not UTF-8 text"),
    ],
)
async def test_content_that_contradicts_its_declared_type_is_refused(
    project: Path, content: bytes, declared: str, problem: str
) -> None:
    async with site_client(project) as client:
        data = await form_with(client, ("upload.png", content, declared))
        resp = await client.post("/upload", data=data)
        assert resp.status == 415
        assert problem in await resp.text()
    assert stored(project) == []


async def test_invalid_utf8_late_in_a_text_file_is_refused_after_streaming(project: Path) -> None:
    # Past the sniffed head: found while streaming, and the partial file removed.
    async with site_client(project) as client:
        data = await form_with(client, ("t.txt", b"x" * 900 + b"\xff", "text/plain"))
        resp = await client.post("/upload", data=data)
        assert resp.status == 415
    assert stored(project) == []


async def test_stored_extension_follows_the_checked_type(project: Path) -> None:
    async with site_client(project) as client:
        data = await form_with(client, ("picture.JPEG.php", PNG, "image/png"))
        resp = await client.post("/upload", data=data)
        (uploaded,) = (await resp.json())["files"]
    assert uploaded["name"].endswith("/picture-JPEG.png")
    assert uploaded["content_type"] == "image/png"


async def test_not_multipart_is_415(project: Path) -> None:
    async with site_client(project) as client:
        headers = {"X-CSRF-Token": await token(client)}
        resp = await client.post("/upload", data={"file": "x"}, headers=headers)
        assert resp.status == 415
        assert "multipart/form-data" in await resp.text()


async def test_files_of_a_request_whose_handler_fails_are_deleted(project: Path) -> None:
    async with site_client(project) as client:
        data = await form_with(client, ("kept.txt", b"x", "text/plain"))
        resp = await client.post("/fail", data=data)
        assert resp.status == 400
        assert "the title is missing" in await resp.text()
    assert stored(project) == []


# --- serving --------------------------------------------------------------------


async def upload_one(
    client: TestClient,  # type: ignore[type-arg]
    filename: str,
    content: bytes,
    content_type: str,
) -> dict[str, str]:
    resp = await client.post(
        "/upload", data=await form_with(client, (filename, content, content_type))
    )
    assert resp.status == 200, await resp.text()
    uploaded: dict[str, str] = (await resp.json())["files"][0]
    return uploaded


async def test_served_as_a_download_with_nosniff_and_a_sandbox(project: Path) -> None:
    async with site_client(project) as client:
        uploaded = await upload_one(client, "notes.txt", b"<script>alert(1)</script>", "text/plain")
        resp = await client.get(f"/media/{uploaded['name']}")
        assert resp.status == 200
        assert await resp.read() == b"<script>alert(1)</script>"
        assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert resp.headers["Content-Disposition"] == 'attachment; filename="notes.txt"'
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in resp.headers["Content-Security-Policy"]


async def test_images_inline_when_asked_and_unicode_names_per_rfc_6266(project: Path) -> None:
    async with site_client(project) as client:
        uploaded = await upload_one(client, "photo.png", PNG, "image/png")
        resp = await client.get(f"/media/{uploaded['name']}", params={"inline": "1"})
        assert resp.status == 200
        assert await resp.read() == PNG
        assert resp.headers["Content-Type"] == "image/png"
        assert resp.headers["Content-Disposition"] == 'inline; filename="photo.png"'
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" not in resp.headers.get("Content-Security-Policy", "")
        named = await client.get(f"/media/{uploaded['name']}", params={"as": "Été à Paris.png"})
        assert named.headers["Content-Disposition"] == (
            'attachment; filename="Ete a Paris.png"; '
            "filename*=UTF-8''%C3%89t%C3%A9%20%C3%A0%20Paris.png"
        )
        injected = await client.get(
            f"/media/{uploaded['name']}", params={"as": 'say "hi"\r\nSet-Cookie a=b.png'}
        )
        assert injected.status == 200
        assert "Set-Cookie" not in injected.headers
        assert injected.headers["Content-Disposition"] == (
            'attachment; filename="say _hi_Set-Cookie a=b.png"; '
            "filename*=UTF-8''say%20%22hi%22Set-Cookie%20a%3Db.png"
        )


@pytest.mark.parametrize(
    "path",
    [
        "/media/..%2F..%2Fconfig%2Fdefault.yaml",
        "/media/%2e%2e/%2e%2e/config/default.yaml",
        "/media//etc/passwd",
        "/media/uploads/..%5C..%5Cconfig%5Cdefault.yaml",
        "/media/C:%5Cwindows",
        "/media/.hidden",
        "/media/nothing-here.txt",
        "/media/link/default.yaml",
    ],
)
async def test_names_that_leave_media_root_are_404(project: Path, path: str) -> None:
    media = project / "var/media"
    media.mkdir(parents=True)
    (media / ".hidden").write_text("secret")
    (media / "link").symlink_to(project / "config")
    async with site_client(project) as client:
        resp = await client.get(path)
        assert resp.status == 404


# --- configuration ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("media_root", "message"),
    [
        ("PKG/static/uploads", "is inside the static folder"),
        ("PKG/media/static/media", "is inside the static folder"),
        ("PKG/media/templates", "is inside the templates folder"),
        ("PKG/media/files", "is inside the package PKG, next to its code"),
        (".", "contains"),
    ],
)
def test_media_root_inside_static_refuses_to_start(
    make_project: ProjectFactory, media_root: str, message: str
) -> None:
    root = make_project(
        FILES, apps=["media"], env_yaml={"test": f"uploads:\n  media_root: {media_root}\n"}
    )
    with pytest.raises(ImproperlyConfigured, match=r"^uploads\.media_root: ") as caught:
        load_site(root, "test")
    assert message.replace("PKG", root.name) in str(caught.value)


@pytest.mark.parametrize(
    "media_type", ["*/*", "image/", "/png", "png", "text/plain; charset=utf-8"]
)
def test_a_route_naming_no_content_type_fails_where_it_is_defined(media_type: str) -> None:
    # Each of these would refuse every file the route is sent.
    with pytest.raises(ValueError, match=r"^accepts_uploads: .* is not a content type; "):
        accepts_uploads(allowed_types=["image/png", media_type])
    with pytest.raises(ValueError, match="must name content types"):
        accepts_uploads(allowed_types=[])


# --- CSRF ---------------------------------------------------------------------------


async def test_upload_without_the_token_first_is_403_and_nothing_stored(project: Path) -> None:
    async with site_client(project) as client:
        assert CSRF_CHECK in client.app  # the security battery's check is used
        data = FormData()
        data.add_field("file", b"hello", filename="a.txt", content_type="text/plain")
        data.add_field("csrf_token", await token(client))  # last: too late
        resp = await client.post("/upload", data=data)
        assert resp.status == 403
        assert "must come first, before any file" in await resp.text()
        forged = FormData()
        forged.add_field("csrf_token", "forged")
        forged.add_field("file", b"hello", filename="a.txt", content_type="text/plain")
        resp = await client.post("/upload", data=forged)
        assert resp.status == 403
        empty, content_type = multipart([])
        resp = await client.post("/upload", data=empty, headers={"Content-Type": content_type})
        assert resp.status == 403
        assert stored(project) == []
        resp = await client.post(
            "/upload", data=await form_with(client, ("a.txt", b"hi", "text/plain"))
        )
        assert resp.status == 200
    assert len(stored(project)) == 1
