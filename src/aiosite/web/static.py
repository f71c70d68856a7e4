"""Static files: the project's ``static/`` and every app's, served under one URL.

aiohttp's ``add_static`` serves one directory; a site needs several roots searched in
order (the project overrides apps, as with templates), so the lookup is ours. The
file itself goes out through ``web.FileResponse`` (sendfile, ETag, Last-Modified,
conditional and range requests).

With the manifest on (production), ``aiosite collectstatic`` has copied the files into
``static.root`` under content-hashed names too (``aiosite.web.static_collect``):
``static()`` gives the hashed URL, read from the manifest once when the site is built,
and hashed files are served with a far-future, immutable Cache-Control.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

import jinja2
from aiohttp import web
from pydantic import Field, field_validator

from aiosite.apps import AppRegistry
from aiosite.battery import Battery
from aiosite.exceptions import ImproperlyConfigured
from aiosite.keys import NO_SITE_BUDGET, TEMPLATE_GLOBALS, state_of
from aiosite.settings import Section, Settings, project_relative
from aiosite.web.core import CORE
from aiosite.web.static_manifest import MANIFEST_NAME, read_manifest
from aiosite.web.template_walk import literal_calls, parsed_templates
from aiosite.web.templates import TEMPLATES

ROUTE_NAME = "static"


class StaticSettings(Section):
    """The ``static:`` section."""

    url: str = "/static/"
    serve: bool = True
    max_age: int = Field(default=3600, ge=0)
    # Where `aiosite collectstatic` copies the files, relative to the project directory.
    root: Path = Path("static_root")
    # Serve hashed names from static.root, read from its manifest; null: on outside
    # development and test.
    manifest: bool | None = None
    # Cache-Control max-age of hashed names (their content never changes): a year.
    immutable_max_age: int = Field(default=31536000, ge=0)

    @field_validator("url")
    @classmethod
    def _slashes(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value if value.endswith("/") else value + "/"


class StaticFiles:
    """Finds a relative static path in the roots, refusing anything that leaves them.

    ``roots`` are served; ``sources`` are the static folders (the roots too, unless the
    files are served from static.root). With a ``manifest`` (plain -> hashed paths),
    ``url()`` gives hashed URLs and hashed files go out with ``immutable_cache_control``.
    """

    def __init__(
        self,
        roots: Sequence[Path],
        url: str,
        cache_control: str,
        *,
        sources: Sequence[Path] | None = None,
        manifest: Mapping[str, str] | None = None,
        manifest_shown: str = MANIFEST_NAME,
        immutable_cache_control: str = "",
    ) -> None:
        self.roots = tuple(root.resolve() for root in roots)
        self.sources = self.roots if sources is None else tuple(s.resolve() for s in sources)
        self.url_prefix = url
        self.cache_control = cache_control
        self.manifest = None if manifest is None else dict(manifest)
        self.manifest_shown = manifest_shown
        # One dict lookup per static() call: the whole URL is ready.
        self._urls = (
            None
            if manifest is None
            else {plain: url + hashed for plain, hashed in manifest.items()}
        )
        self._immutable = frozenset(manifest.values()) if manifest is not None else frozenset()
        self._immutable_cache_control = immutable_cache_control

    def url(self, path: str) -> str:
        urls = self._urls
        if urls is None:
            return self.url_prefix + path.lstrip("/")
        found = urls.get(path)
        if found is None:
            found = urls.get(path.lstrip("/"))
            if found is None:
                raise ImproperlyConfigured(self.manifest_problem(path.lstrip("/")))
        return found

    def manifest_problem(self, relative: str) -> str | None:
        """Why ``relative`` has no hashed URL; None when it has one or no manifest is used."""
        if self.manifest is None or relative in self.manifest:
            return None
        return (
            f"static({relative!r}): not in the static manifest {self.manifest_shown}: "
            "run `aiosite collectstatic` (after adding the file to a static folder)"
        )

    def find(self, relative: str) -> Path | None:
        """The file served for ``relative``, or None."""
        return _find(self.roots, relative)

    def find_source(self, relative: str) -> Path | None:
        """The file of the static folders for ``relative``, or None."""
        return _find(self.sources, relative)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        relative = request.match_info["path"]
        path = self.find(relative)
        if path is None:
            raise web.HTTPNotFound()
        immutable = relative in self._immutable
        cache_control = self._immutable_cache_control if immutable else self.cache_control
        return web.FileResponse(path, headers={"Cache-Control": cache_control})


setattr(StaticFiles.handle, NO_SITE_BUDGET, True)


def _find(roots: Sequence[Path], relative: str) -> Path | None:
    parts = relative.split("/")
    for part in parts:
        # Empty, dot, dot-dot and hidden segments, backslashes (Windows separators),
        # NUL bytes and drive letters never name a static file.
        if not part or part.startswith(".") or "\\" in part or "\0" in part or ":" in part:
            return None
    for root in roots:
        candidate = root.joinpath(*parts)
        try:
            resolved = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        # A symlink may not lead out of its root.
        if resolved.is_relative_to(root) and resolved.is_file():
            return resolved
    return None


STATIC_FILES: web.AppKey[StaticFiles] = web.AppKey("aiosite.static", StaticFiles)


def static_root(settings: Settings) -> Path:
    """Where ``aiosite collectstatic`` copies the files: ``static.root`` under the project."""
    return settings.project_dir / settings.section(StaticSettings).root


def manifest_enabled(settings: Settings) -> bool:
    """``static.manifest``; null is on outside development and test."""
    manifest = settings.section(StaticSettings).manifest
    return not settings.is_local if manifest is None else manifest


def _attach(app: web.Application, settings: Settings, registry: AppRegistry) -> None:
    options = settings.section(StaticSettings)
    cache_control = "no-cache" if settings.debug.enabled else f"public, max-age={options.max_age}"
    sources = registry.search_path("static")
    if manifest_enabled(settings):
        root = static_root(settings)
        manifest_file = root / MANIFEST_NAME
        shown = project_relative(manifest_file, settings.project_dir)
        files = StaticFiles(
            [root],
            options.url,
            cache_control,
            sources=sources,
            # A site without a static folder (an API) has nothing to collect.
            manifest=read_manifest(manifest_file, shown)
            if sources or manifest_file.exists()
            else {},
            manifest_shown=shown,
            immutable_cache_control=f"public, max-age={options.immutable_max_age}, immutable",
        )
        app.on_startup.append(_manifest_check(settings.project_dir))
    else:
        files = StaticFiles(sources, options.url, cache_control)
    app[STATIC_FILES] = files
    if options.serve:
        handler = app[CORE].wrap(files.handle)
        app.router.add_get(options.url + "{path:.+}", handler, name=ROUTE_NAME)
    template_globals = app.get(TEMPLATE_GLOBALS)
    if template_globals is not None:
        # An app's own template_globals win (a CDN's static(), say).
        template_globals.setdefault("static", static_global)


def _manifest_check(project_dir: Path) -> Callable[[web.Application], Awaitable[None]]:
    async def check(app: web.Application) -> None:
        # At startup, once every app has set up its templates and globals: a page whose
        # static('...') is not in the manifest would fail for its visitors.
        problems = manifest_reference_problems(app, project_dir)
        if problems:
            files = app[STATIC_FILES]
            raise ImproperlyConfigured(
                f"static.manifest: templates use static files that the manifest "
                f"{files.manifest_shown} does not list; add them to a static folder and run "
                "`aiosite collectstatic`:\n" + "\n".join(f"  {p}" for p in problems)
            )

    return check


def manifest_reference_problems(app: web.Application, project_dir: Path) -> list[str]:
    """``template FILE:LINE: static('path'): not in the ...manifest`` for each literal
    static() call of the site's templates that the manifest does not list."""
    files = app.get(STATIC_FILES)
    templates = app.get(TEMPLATES)
    if files is None or files.manifest is None or templates is None:
        return []
    env = templates.env
    if env.globals.get("static") is not static_global:
        return []  # an app's own static() (a CDN's): not ours to check
    problems = []
    for parsed in parsed_templates(env):
        if parsed.tree is None:
            continue  # `aiosite check` reports it; rendering it would fail anyway
        for call in literal_calls(parsed.tree, ("static",)):
            problem = files.manifest_problem(call.value.lstrip("/"))
            if problem is not None:
                shown = project_relative(parsed.filename, project_dir)
                problems.append(f"template {shown}:{call.line}: {problem}")
    return problems


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
