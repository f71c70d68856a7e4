"""Static files: the project's ``static/`` and every app's, served under one URL.

aiohttp's ``add_static`` serves one directory; a site needs several roots searched in
order (the project overrides apps, as with templates), so the lookup is ours. The
file itself goes out through ``web.FileResponse`` (sendfile, ETag, Last-Modified,
conditional and range requests).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import jinja2
from aiohttp import web
from pydantic import Field, field_validator

from aiosite.apps import AppRegistry
from aiosite.battery import Battery
from aiosite.keys import TEMPLATE_GLOBALS, state_of
from aiosite.settings import Section, Settings
from aiosite.web.core import CORE

ROUTE_NAME = "static"


class StaticSettings(Section):
    """The ``static:`` section."""

    url: str = "/static/"
    serve: bool = True
    max_age: int = Field(default=3600, ge=0)

    @field_validator("url")
    @classmethod
    def _slashes(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value if value.endswith("/") else value + "/"


class StaticFiles:
    """Finds a relative static path in the roots, refusing anything that leaves them."""

    def __init__(self, roots: Sequence[Path], url: str, cache_control: str) -> None:
        self.roots = tuple(root.resolve() for root in roots)
        self.url_prefix = url
        self.cache_control = cache_control

    def url(self, path: str) -> str:
        return self.url_prefix + path.lstrip("/")

    def find(self, relative: str) -> Path | None:
        parts = relative.split("/")
        for part in parts:
            # Empty, dot, dot-dot and hidden segments, backslashes (Windows separators),
            # NUL bytes and drive letters never name a static file.
            if not part or part.startswith(".") or "\\" in part or "\0" in part or ":" in part:
                return None
        for root in self.roots:
            candidate = root.joinpath(*parts)
            try:
                resolved = candidate.resolve(strict=True)
            except (OSError, RuntimeError):
                continue
            # A symlink may not lead out of its root.
            if resolved.is_relative_to(root) and resolved.is_file():
                return resolved
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = self.find(request.match_info["path"])
        if path is None:
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Cache-Control": self.cache_control})


STATIC_FILES: web.AppKey[StaticFiles] = web.AppKey("aiosite.static", StaticFiles)


def _attach(app: web.Application, settings: Settings, registry: AppRegistry) -> None:
    options = settings.section(StaticSettings)
    cache_control = "no-cache" if settings.debug.enabled else f"public, max-age={options.max_age}"
    files = StaticFiles(registry.search_path("static"), options.url, cache_control)
    app[STATIC_FILES] = files
    if options.serve:
        handler = app[CORE].wrap(files.handle)
        app.router.add_get(options.url + "{path:.+}", handler, name=ROUTE_NAME)
    template_globals = app.get(TEMPLATE_GLOBALS)
    if template_globals is not None:
        # An app's own template_globals win (a CDN's static(), say).
        template_globals.setdefault("static", static_global)


battery = Battery("aiosite.static", _attach, {"static": StaticSettings})
setup = battery.setup


def static_url(target: web.Request | web.Application, path: str) -> str:
    """The URL of the static file ``path``, e.g. ``static_url(request, "blog/site.css")``."""
    files: StaticFiles = state_of(target)[STATIC_FILES]
    return files.url(path)


@jinja2.pass_context
def static_global(ctx: jinja2.runtime.Context, path: str) -> str:
    """``{{ static("blog/site.css") }}`` in templates."""
    request: web.Request = ctx["request"]
    return request.config_dict[STATIC_FILES].url(path)
