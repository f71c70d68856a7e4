"""Serving stored files back, so that a browser never runs what someone uploaded.

An uploaded file is served with the type it was checked as, ``nosniff`` so the browser
does not guess another, as a download unless it is an image (or text) shown inline on
request, and anything that is not an image in a CSP sandbox: an HTML or SVG file that
slipped through runs no script with the site's cookies.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from urllib.parse import quote

from aiohttp import hdrs, web

from aiosite.uploads.content import RASTER_IMAGES, is_text, served_type
from aiosite.uploads.names import display_filename
from aiosite.uploads.storage import UPLOAD_STORAGE, InvalidName, name_parts

SANDBOX_POLICY = "sandbox; default-src 'none'"
# Shown inline when asked: nothing in them runs.
_INLINE_TYPES = RASTER_IMAGES | {"text/plain"}
_UNSAFE_IN_QUOTES = re.compile(r"[^A-Za-z0-9 ._()+,=@~-]+")


def content_disposition(filename: str, *, inline: bool = False) -> str:
    """``attachment; filename="..."`` with an ASCII fallback and RFC 6266's
    ``filename*=UTF-8''...`` for the real name when it is not plain ASCII."""
    kind = "inline" if inline else "attachment"
    name = display_filename(filename)
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    ascii_name = _UNSAFE_IN_QUOTES.sub("_", ascii_name).strip(" _") or "download"
    value = f'{kind}; filename="{ascii_name}"'
    if ascii_name != name:
        value += f"; filename*=UTF-8''{quote(name, safe='')}"
    return value


async def file_response(
    request: web.Request,
    name: str,
    *,
    filename: str | None = None,
    inline: bool = False,
    content_type: str | None = None,
) -> web.StreamResponse:
    """The response for the stored file ``name`` (an ``UploadedFile.name``).

    ``filename`` is the name the browser saves it as (``UploadedFile.filename``; the
    stored name by default). ``inline=True`` shows images and plain text in the browser
    instead of downloading them; other types are always downloads. ``content_type``
    defaults to the one the stored extension says (the checked type). A name that does
    not exist or leads out of the storage is a 404.
    """
    storage = request.config_dict[UPLOAD_STORAGE]
    try:
        parts = name_parts(name)
    except InvalidName:
        raise web.HTTPNotFound() from None
    if content_type:
        media_type = content_type.split(";", 1)[0].strip().lower()
    else:
        media_type = served_type(parts[-1])
    # An uploaded text file was stored only once it decoded as UTF-8.
    header_type = f"{media_type}; charset=utf-8" if is_text(media_type) else media_type
    headers = {
        hdrs.CONTENT_TYPE: header_type,
        hdrs.CONTENT_DISPOSITION: content_disposition(
            filename or parts[-1], inline=inline and media_type in _INLINE_TYPES
        ),
        hdrs.X_CONTENT_TYPE_OPTIONS: "nosniff",
    }
    if media_type not in RASTER_IMAGES:
        headers[hdrs.CONTENT_SECURITY_POLICY] = SANDBOX_POLICY
    path = await asyncio.to_thread(storage.path, name)
    if path is not None:
        # Stored names never contain an inner dot, so no "x.png.gz" sibling exists for
        # FileResponse to serve in place of "x.png".
        return web.FileResponse(path, headers=headers)
    if not await storage.exists(name):
        raise web.HTTPNotFound()
    response = web.StreamResponse(headers=headers)
    response.content_length = await storage.size(name)
    await response.prepare(request)
    async for chunk in storage.open(name):
        await response.write(chunk)
    await response.write_eof()
    return response
