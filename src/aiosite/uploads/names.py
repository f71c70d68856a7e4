"""File names from the client, made safe to store and to show.

A client's file name is data, never a path: it may carry directories (``../../etc``,
``..\\..\\x``), a drive (``C:x``), an NTFS stream (``x.txt:s``), NUL and control
characters, bidirectional overrides that disguise an extension, a leading dot
(``.htaccess``) or thousands of characters. The stored name keeps none of that: an ASCII
slug with the extension that matches the checked content type.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime

DEFAULT_STEM = "file"
# Room for the clash suffix a storage adds, far below any file system's 255.
MAX_STEM_LENGTH = 80
MAX_DISPLAY_LENGTH = 200
_SLUG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_DASHES = re.compile(r"-{2,}")
_FOLDER_SEGMENT = re.compile(r"^[A-Za-z0-9_-]+$")
# Names Windows reserves for devices, whatever the extension.
_WINDOWS_DEVICES = frozenset(
    {"con", "prn", "aux", "nul"} | {f"com{i}" for i in range(10)} | {f"lpt{i}" for i in range(10)}
)


def base_name(raw: str) -> str:
    """The last segment of a client's file name: no directory, drive or stream, and no
    control or invisible formatting characters."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = name.rsplit(":", 1)[-1]
    # Categories C*: controls (NUL included), format characters (bidi overrides),
    # surrogates, private use and unassigned code points.
    return "".join(ch for ch in name if not unicodedata.category(ch).startswith("C")).strip()


def display_filename(raw: str) -> str:
    """The client's name for showing and for a download's ``filename*``: Unicode kept,
    everything that could act as a path or hide the real extension removed."""
    name = unicodedata.normalize("NFC", base_name(raw)).lstrip(". ")
    if len(name) > MAX_DISPLAY_LENGTH:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 16:
            name = stem[: MAX_DISPLAY_LENGTH - len(ext) - 1] + dot + ext
        else:
            name = name[:MAX_DISPLAY_LENGTH]
    return name or DEFAULT_STEM


def storage_stem(raw: str) -> str:
    """An ASCII slug of the name without its extension: letters, digits, ``-``, ``_``."""
    name = base_name(raw)
    stem = name.rpartition(".")[0] if "." in name.lstrip(".") else name
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    # Inner dots go too: "shell.php.png" must not reach a server that runs ".php.".
    slug = _DASHES.sub("-", _SLUG_UNSAFE.sub("-", ascii_stem)).strip("-_")[:MAX_STEM_LENGTH]
    slug = slug.rstrip("-_")
    if not slug:
        return DEFAULT_STEM
    if slug.lower() in _WINDOWS_DEVICES:
        return f"{DEFAULT_STEM}-{slug}"
    return slug


def storage_filename(raw: str, extension: str) -> str:
    """The name a file is stored under: the slug of ``raw`` and ``extension`` (with its
    dot, chosen from the checked content type, or "")."""
    return storage_stem(raw) + extension


def check_folder(folder: str) -> str:
    """``folder`` (``"avatars"``, ``"docs/invoices"``) if every segment is a plain name."""
    segments = folder.strip("/").split("/")
    if not all(_FOLDER_SEGMENT.match(segment) for segment in segments):
        raise ValueError(
            f"upload folder {folder!r}: use names of letters, digits, '-' and '_' "
            "separated by '/', e.g. 'avatars' or 'docs/invoices'"
        )
    return "/".join(segments)


def dated_name(folder: str, filename: str, now: datetime | None = None) -> str:
    """Where a new upload goes: ``<folder>/<yyyy>/<mm>/<dd>/<filename>`` (UTC date), so
    that no folder grows without bound and old uploads are easy to find and prune."""
    day = (now or datetime.now(UTC)).strftime("%Y/%m/%d")
    return f"{folder}/{day}/{filename}"
