"""Reversing route names (``"blog:detail"``) and parameters into URLs."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

import jinja2
from aiohttp import web

from aiosite.exceptions import NoReverseMatch
from aiosite.keys import state_of

_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class UrlReverser:
    """Turns route names and parameters into URLs; parameters a route's path does not
    use become the query string."""

    def __init__(self, router: web.UrlDispatcher) -> None:
        self._router = router
        self._placeholders: dict[str, frozenset[str]] = {}

    def reverse(self, name: str, params: Mapping[str, Any]) -> str:
        try:
            resource = self._router[name]
        except KeyError:
            raise NoReverseMatch(self._unknown(name)) from None
        placeholders = self._placeholders.get(name)
        if placeholders is None:
            formatter = _formatter(resource)
            placeholders = frozenset(_PLACEHOLDER_RE.findall(formatter))
            self._placeholders[name] = placeholders
        missing = placeholders.difference(params)
        if missing:
            raise NoReverseMatch(
                f"route {name!r} ({_formatter(resource)}) needs "
                f"{', '.join(sorted(missing))}; got {', '.join(sorted(params)) or 'nothing'}"
            )
        path_params = {key: str(params[key]) for key in placeholders}
        url = resource.url_for(**path_params)
        query = _query({key: value for key, value in params.items() if key not in placeholders})
        return str(url.with_query(query) if query else url)

    def _unknown(self, name: str) -> str:
        known = [n for n in self._router.named_resources()]
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        if ":" not in name and not close:
            hint = "; route names have the form 'app:name'"
        return f"no route named {name!r}{hint}"


def _formatter(resource: web.AbstractResource) -> str:
    info = resource.get_info()
    return str(info.get("formatter") or info.get("path") or info.get("prefix") or "")


def _query(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None:
            continue
        values = value if isinstance(value, list | tuple) else (value,)
        pairs.extend((key, str(item)) for item in values)
    return pairs


def url_for(target: web.Request | web.Application, name: str, /, **params: Any) -> str:
    """The URL of the route ``name`` (``"app:route"``), e.g.
    ``url_for(request, "blog:detail", slug="x", page=2)`` -> ``/blog/x?page=2``."""
    reverser: UrlReverser = state_of(target)[URLS]
    return reverser.reverse(name, params)


URLS: web.AppKey[UrlReverser] = web.AppKey("aiosite.urls", UrlReverser)


@jinja2.pass_context
def url_global(ctx: jinja2.runtime.Context, name: str, /, **params: Any) -> str:
    """``{{ url("blog:detail", slug=post.slug) }}`` in templates."""
    request: web.Request = ctx["request"]
    return request.config_dict[URLS].reverse(name, params)
