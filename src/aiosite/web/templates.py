"""Jinja2 templates: project templates override app templates, rendered asynchronously.

Written on Jinja2 directly rather than aiohttp-jinja2: its context processors run as a
middleware on every request, including those that render nothing, while here they run
only when a template is rendered, and ``url``/``static`` are plain globals.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import jinja2
from aiohttp import web

from aiosite.apps import AppRegistry, ContextProcessor
from aiosite.battery import Battery
from aiosite.handlers import request_of
from aiosite.keys import TEMPLATE_GLOBALS
from aiosite.settings import Section, Settings

BUILTIN_TEMPLATES = Path(__file__).parent / "templates"
PLAIN_TEXT_EXTENSIONS = ("txt", "text", "md", "csv")

HandlerT = TypeVar("HandlerT", bound=Callable[..., Awaitable[Any]])


class TemplateSettings(Section):
    """The ``templates:`` section."""

    # None: follow debug.enabled (re-read changed templates while debugging).
    auto_reload: bool | None = None


class Templates:
    """The site's Jinja2 environment and its context processors."""

    def __init__(self, env: jinja2.Environment, processors: Sequence[ContextProcessor]) -> None:
        self.env = env
        self.processors = tuple(processors)
        self._loaded: dict[str | tuple[str, ...], jinja2.Template] = {}

    async def get_template(self, name: str | Sequence[str]) -> jinja2.Template:
        """The compiled template; compiling (tens of milliseconds for a large template)
        happens in a thread, so a first render never blocks the event loop."""
        key = name if isinstance(name, str) else tuple(name)
        template = self._loaded.get(key)
        if template is None or (self.env.auto_reload and not template.is_up_to_date):
            template = await asyncio.to_thread(self._load, key)
            self._loaded[key] = template
        return template

    def _load(self, key: str | tuple[str, ...]) -> jinja2.Template:
        if isinstance(key, str):
            return self.env.get_template(key)
        return self.env.select_template(list(key))

    async def context(self, request: web.Request, context: Mapping[str, Any]) -> dict[str, Any]:
        merged: dict[str, Any] = {"request": request}
        for processor in self.processors:
            extra = processor(request)
            if inspect.isawaitable(extra):
                extra = await extra
            merged.update(extra)
        merged.update(context)
        return merged

    async def render_string(
        self, request: web.Request, name: str | Sequence[str], context: Mapping[str, Any]
    ) -> str:
        template = await self.get_template(name)
        return await template.render_async(await self.context(request, context))


def build_environment(
    search_path: Iterable[Path],
    *,
    auto_reload: bool,
    globals_: Mapping[str, Any] = {},
    filters: Mapping[str, Callable[..., Any]] = {},
) -> jinja2.Environment:
    loader = jinja2.ChoiceLoader(
        [jinja2.FileSystemLoader(str(path)) for path in search_path]
        + [jinja2.FileSystemLoader(str(BUILTIN_TEMPLATES))]
    )
    env = jinja2.Environment(
        loader=loader,
        # Escape everything (also unknown extensions and strings) but plain-text formats.
        autoescape=jinja2.select_autoescape(
            disabled_extensions=PLAIN_TEXT_EXTENSIONS, default_for_string=True, default=True
        ),
        enable_async=True,
        auto_reload=auto_reload,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(globals_)
    env.filters.update(filters)
    return env


TEMPLATES: web.AppKey[Templates] = web.AppKey("aiosite.templates", Templates)


def _attach(app: web.Application, settings: Settings, registry: AppRegistry) -> None:
    globals_: dict[str, Any] = {"site": settings.site, "settings": settings}
    filters: dict[str, Callable[..., Any]] = {}
    processors: list[ContextProcessor] = []
    for loaded in registry:
        globals_.update(loaded.config.template_globals)
        filters.update(loaded.config.template_filters)
        processors.extend(loaded.config.context_processors)
    processors.extend(registry.project.context_processors)
    env = build_environment(
        registry.search_path("templates"),
        auto_reload=auto_reload(settings),
        globals_=globals_,
        filters=filters,
    )
    app[TEMPLATES] = Templates(env, processors)
    # Later batteries add their helpers (url, static, csrf_input...) here.
    app[TEMPLATE_GLOBALS] = env.globals


def auto_reload(settings: Settings) -> bool:
    """Whether changed templates are re-read: as set, else in debug mode."""
    auto = settings.section(TemplateSettings).auto_reload
    return settings.debug.enabled if auto is None else auto


battery = Battery("aiosite.templates", _attach, {"templates": TemplateSettings})
setup = battery.setup


async def render_string(
    request: web.Request, name: str | Sequence[str], context: Mapping[str, Any] | None = None
) -> str:
    """Render the template ``name`` (or the first that exists of a list) to a string."""
    return await request.config_dict[TEMPLATES].render_string(request, name, context or {})


async def render(
    request: web.Request,
    name: str | Sequence[str],
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    content_type: str = "text/html",
) -> web.Response:
    """Render the template ``name`` with ``context`` into an HTML response."""
    body = await render_string(request, name, context)
    return web.Response(
        text=body, status=status, headers=headers, content_type=content_type, charset="utf-8"
    )


def template(
    name: str, *, status: int = 200, content_type: str = "text/html"
) -> Callable[[HandlerT], HandlerT]:
    """Render ``name`` with the mapping a handler returns; a returned response passes through.

    Works on function handlers and on the methods of a class-based view.
    """

    def decorator(handler: HandlerT) -> HandlerT:
        @functools.wraps(handler)
        async def wrapper(*args: Any, **kwargs: Any) -> web.StreamResponse:
            request = request_of(args, decorator="@template", handler=handler)
            result = await handler(*args, **kwargs)
            if isinstance(result, web.StreamResponse):
                return result
            return await render(request, name, result, status=status, content_type=content_type)

        return wrapper  # type: ignore[return-value]

    return decorator
