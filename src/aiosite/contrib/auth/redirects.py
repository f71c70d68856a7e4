"""Where to send a browser: settings that name a route or a path, and ``next``
parameters, which must stay on this site."""

from __future__ import annotations

from aiohttp import web
from yarl import URL

from aiosite import url_for

NEXT_MAX = 2000


def resolve(request: web.Request, target: str) -> str:
    """``target`` is a path (``/``, ``/accounts/login``) or a route name (``auth:login``)."""
    if target.startswith("/") or ":" not in target:
        return target
    return url_for(request, target)


def with_next(url: str, next_path: str) -> str:
    """``url`` with ``?next=next_path`` added to its query."""
    return str(URL(url).update_query(next=next_path))


def safe_next(value: object) -> str | None:
    """``value`` when it is a path on this site, else None.

    Refuses what a browser would take to another site: ``//evil.com`` (a
    scheme-relative URL), ``https://evil.com``, backslashes (``/\\evil.com``, which some
    browsers read as ``//``), and control characters (``/\\t/evil.com``).
    """
    if not isinstance(value, str) or not value.startswith("/") or len(value) > NEXT_MAX:
        return None
    if value.startswith("//") or "\\" in value:
        return None
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        return None
    try:
        url = URL(value)
    except ValueError:
        return None
    if url.scheme or url.host is not None:
        return None
    return value
