"""Text helpers: slugs from titles, and the template filters for post bodies and dates."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime

SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_BLANK_LINES = re.compile(r"\n\s*\n")


def slugify(text: str, max_length: int = 200) -> str:
    """``"Hello, aiohttp 3.14!"`` -> ``"hello-aiohttp-3-14"``: ASCII letters, digits, hyphens."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = _NOT_SLUG.sub("-", ascii_text.lower()).strip("-")
    return slug[:max_length].rstrip("-")


def paragraphs(text: str) -> list[str]:
    """A plain-text body split on blank lines; the template wraps each in ``<p>``."""
    return [part.strip() for part in _BLANK_LINES.split(text.replace("\r\n", "\n")) if part.strip()]


def format_date(value: datetime) -> str:
    """``3 March 2025`` (``strftime``'s ``%-d`` is not portable)."""
    return f"{value.day} {value:%B %Y}"


def file_size(size: int) -> str:
    """``183204`` -> ``179 KB``, ``1572864`` -> ``1.5 MB`` (1 KB = 1024 bytes, as file
    managers count)."""
    if size < 1024:
        return "1 byte" if size == 1 else f"{size} bytes"
    value, unit = (size / 1024, "KB") if size < 1024**2 else (size / 1024**2, "MB")
    shown = f"{value:.1f}".removesuffix(".0") if value < 10 else f"{value:.0f}"
    return f"{shown} {unit}"
