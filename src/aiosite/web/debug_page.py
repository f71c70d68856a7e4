"""The debug 500 page: the traceback with source and locals, secrets blanked out.

Shown only when ``debug.enabled`` is on; in production a 500 shows nothing of the
exception (``aiosite.web.errors``).
"""

from __future__ import annotations

import linecache
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import aiohttp_session
from aiohttp import web

from aiosite.hooks import HOOKS
from aiosite.keys import SETTINGS
from aiosite.web.errors import render_page, wants_json
from aiosite.web.responses import json_response

_SECRET_NAME = re.compile(r"pass|secret|token|key|auth|cookie|session|csrf|signature", re.I)


async def debug_response(request: web.Request, exc: BaseException) -> web.Response:
    """The 500 page of debug mode, or its JSON for an API client."""
    scrub = _Scrubber(request)
    hooks = request.config_dict.get(HOOKS)
    context = {
        "exc_type": type(exc).__name__,
        "exc_message": scrub(str(exc)),
        "hint": hooks.exception_hint(exc) if hooks is not None else None,
        "frames": _frames(exc.__traceback__, scrub),
        "traceback": scrub("".join(traceback.format_exception(exc))),
        "headers": [
            (k, "********" if _SECRET_NAME.search(k) else v) for k, v in request.headers.items()
        ],
        "request": request,
    }
    if wants_json(request):
        body = {
            "error": {
                "status": 500,
                "reason": "Internal Server Error",
                "message": f"{type(exc).__name__}: {context['exc_message']}",
                "hint": context["hint"],
                "traceback": context["traceback"],
            }
        }
        return json_response(body, status=500)
    return await render_page(request, ["aiosite/debug_500.html"], context, 500, {})


class _Scrubber:
    """Blanks out the secrets a request carries (secret-looking query values, headers and
    cookies) wherever they would show on the debug page, e.g. inside a local's repr."""

    def __init__(self, request: web.Request) -> None:
        values = [v for k, v in request.query.items() if _SECRET_NAME.search(k)]
        values += [v for k, v in request.headers.items() if _SECRET_NAME.search(k)]
        values += list(request.cookies.values())
        # The parsed form, if the handler (or the CSRF check) read one: never read an
        # unread body here. aiohttp keeps it on the request without a public accessor.
        form = getattr(request, "_post", None)
        if form is not None:
            values += [v for k, v in form.items() if isinstance(v, str) and _SECRET_NAME.search(k)]
        session = request.get(aiohttp_session.SESSION_KEY)
        if session is not None:
            values += [
                v for k, v in session.items() if isinstance(v, str) and _SECRET_NAME.search(k)
            ]
        values += request.config_dict[SETTINGS].security.secret_values()
        # Longest first, so a secret that contains another is blanked whole.
        self._secrets = sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "********")
        return text


@dataclass(frozen=True, slots=True)
class Frame:
    filename: str
    lineno: int
    function: str
    lines: tuple[tuple[int, str], ...]
    locals: tuple[tuple[str, str], ...]
    library: bool


def _frames(tb: TracebackType | None, scrub: _Scrubber) -> list[Frame]:
    frames = []
    # Library frames fold on the page: installed packages, the stdlib and aiosite itself.
    library_roots = (
        *(p for p in sys.path if "site-packages" in p or "lib/python" in p),
        str(Path(__file__).resolve().parents[1]),
    )
    while tb is not None:
        code = tb.tb_frame.f_code
        lineno = tb.tb_lineno
        around = range(max(lineno - 3, 1), lineno + 3)
        lines = tuple((n, linecache.getline(code.co_filename, n).rstrip()) for n in around)
        local_vars = tuple(
            (name, "********" if _SECRET_NAME.search(name) else scrub(_short_repr(value)))
            for name, value in tb.tb_frame.f_locals.items()
        )
        frames.append(
            Frame(
                code.co_filename,
                lineno,
                code.co_name,
                lines,
                local_vars,
                code.co_filename.startswith(library_roots),
            )
        )
        tb = tb.tb_next
    return frames


def _short_repr(value: object) -> str:
    try:
        text = repr(value)
    except Exception as exc:
        text = f"<repr failed: {type(exc).__name__}>"
    return text if len(text) <= 300 else text[:300] + "…"
