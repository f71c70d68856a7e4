"""What an uploaded file is: the declared type checked against an allow-list and
against the content itself.

The declared type is whatever the client says; the first bytes say what the file is
(``filetype`` knows the signatures of images, documents, archives, executables).
Both must agree wherever the signature is known, so an executable declared as
``image/png`` is refused; text must be UTF-8. The stored file's extension is the one of
the checked type, so that whatever serves it later (aiosite, nginx) derives the same
type from the name.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Sequence
from typing import Any

from aiohttp.helpers import parse_mimetype

GENERIC_BINARY = "application/octet-stream"
# The filetype library reads at most this much of a file.
SNIFF_BYTES = 8192
# Other spellings clients send for the same type.
_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
    "application/x-pdf": "application/pdf",
}
# What the sniffer may call a file of a declared type: an animated PNG is a PNG; Office
# and OpenDocument files and EPUBs are ZIP archives whose signature may be all it sees.
_ZIP_CONTAINERS = frozenset(
    {
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "application/vnd.oasis.opendocument.text",
        "application/vnd.oasis.opendocument.spreadsheet",
        "application/vnd.oasis.opendocument.presentation",
        "application/epub+zip",
    }
)
# Shown inline when asked: the browser displays them without running anything.
RASTER_IMAGES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/avif",
        "image/bmp",
        "image/x-icon",
        "image/vnd.microsoft.icon",
    }
)


def declared_type(header: str | None) -> str:
    """The media type of a part's Content-Type header, lower case, without parameters."""
    if not header:
        return GENERIC_BINARY
    parsed = parse_mimetype(header)
    if not parsed.type or not parsed.subtype:
        return GENERIC_BINARY
    media_type = f"{parsed.type}/{parsed.subtype}".lower()
    return _ALIASES.get(media_type, media_type)


def is_allowed(media_type: str, allowed: Sequence[str]) -> bool:
    """Whether ``allowed`` names ``media_type`` or its family (``image/*``)."""
    family = media_type.split("/", 1)[0] + "/*"
    return media_type in allowed or family in allowed


def _filetype() -> Any:
    # Imported when a file is first checked: a site that takes no uploads never needs it.
    import filetype

    return filetype


def sniffed_type(head: bytes) -> str | None:
    mime = _filetype().guess_mime(head)
    return mime if isinstance(mime, str) else None


def _signature_known(media_type: str) -> bool:
    return media_type != GENERIC_BINARY and _filetype().get_type(mime=media_type) is not None


def _agrees(sniffed: str, declared: str) -> bool:
    if sniffed == declared:
        return True
    if sniffed == "image/apng":
        return declared == "image/png"
    return sniffed == "application/zip" and declared in _ZIP_CONTAINERS


def content_problem(declared: str, head: bytes) -> str | None:
    """Why the first bytes of a file contradict its declared type, or None."""
    if declared == GENERIC_BINARY:
        return None  # a route that accepts any bytes asked for no check
    sniffed = sniffed_type(head)
    if sniffed is not None:
        return None if _agrees(sniffed, declared) else f"its content is {sniffed}"
    if _signature_known(declared):
        return f"its content is not {declared}"
    return None


def is_text(media_type: str) -> bool:
    """Text types are checked to decode as UTF-8 (and served as UTF-8)."""
    return media_type.startswith("text/")


def extension_for(media_type: str) -> str:
    """The extension (with its dot) a file of ``media_type`` is stored with: one from
    which ``mimetypes`` derives the same type again, or "" when there is none."""
    candidates = [mimetypes.guess_extension(media_type, strict=False)]
    known = _filetype().get_type(mime=media_type)
    if known is not None:
        candidates.append(f".{known.extension}")
    for extension in candidates:
        if extension and mimetypes.guess_type(f"x{extension}", strict=False)[0] == media_type:
            return extension
    return ""


def served_type(name: str) -> str:
    """The media type of a stored name (its extension was chosen from its type)."""
    return mimetypes.guess_type(name, strict=False)[0] or GENERIC_BINARY
