"""References from a stylesheet to other static files: ``url(...)`` and ``@import "..."``.

``aiosite collectstatic`` rewrites the relative ones to the hashed names, so that a
stylesheet served with a far-future cache header never points at an outdated image.
References to other sites, ``data:`` URLs, absolute paths and fragments are left alone,
as is anything inside a comment.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from aiosite.web.static_manifest import hashed_name

_TOKENS = re.compile(
    r"""
      (?P<comment>/\*.*?(?:\*/|\Z))
    | (?P<url>\burl\(\s*(?P<q>["']?)(?P<url_ref>[^"')]*?)(?P=q)\s*\))
    | (?P<import>@import\s+(?P<iq>["'])(?P<import_ref>[^"']*)(?P=iq))
    """,
    re.IGNORECASE | re.DOTALL | re.VERBOSE,
)
# A scheme (http:, data:, about:...) makes a reference absolute.
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Reference:
    """A relative reference in a stylesheet, and the static path it resolves to."""

    line: int
    written: str  # as written, e.g. url(../img/a.png?v=2)
    start: int  # where the path (without query or fragment) starts in the text
    end: int
    path: str  # the path as written: ../img/a.png
    target: str  # the static path it names, e.g. blog/img/a.png ("../x" outside the roots)


def references(css_path: str, text: str) -> list[Reference]:
    """The relative references of the stylesheet ``css_path`` (a static path), whose
    content is ``text``, in order."""
    found = []
    base = posixpath.dirname(css_path)
    for match in _TOKENS.finditer(text):
        if match.group("comment") is not None:
            continue
        group = "url_ref" if match.group("url") is not None else "import_ref"
        ref = match.group(group).strip()
        if not ref or ref.startswith(("#", "/")) or _SCHEME.match(ref):
            continue
        offset = match.start(group) + match.group(group).index(ref)
        path = re.split(r"[?#]", ref, maxsplit=1)[0]
        if not path:
            continue
        target = posixpath.normpath(posixpath.join(base, unquote(path)))
        found.append(
            Reference(
                line=text.count("\n", 0, match.start()) + 1,
                written=match.group(0),
                start=offset,
                end=offset + len(path),
                path=path,
                target=target,
            )
        )
    return found


def rewrite(
    text: str, refs: Sequence[Reference], digest_of: Callable[[Reference], str | None]
) -> str:
    """``text`` with each reference's file name hashed with ``digest_of(ref)``; a
    reference it gives no digest for is kept as written. The directory part (``../``
    included) and any query or fragment stay as they were."""
    pieces = []
    position = 0
    for ref in refs:
        digest = digest_of(ref)
        if digest is None:
            continue
        pieces.append(text[position : ref.start])
        pieces.append(hashed_name(ref.path, digest))
        position = ref.end
    pieces.append(text[position:])
    return "".join(pieces)
