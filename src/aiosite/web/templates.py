"""Jinja2 templates: project templates override app templates; async functions awaited.

Written on Jinja2 directly rather than aiohttp-jinja2: its context processors run as a
middleware on every request, including those that render nothing, while here they run
only when a template is rendered, and ``url``/``static`` are plain globals.

Each template is compiled twice over, once per environment it may need: in Jinja2's
async mode when it awaits something (an async global or filter, in it or in a template
it extends, includes or imports), else synchronously, which costs a third less CPU for
a typical page (``aiosite.web.template_modes`` decides, once per template).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import jinja2
from aiohttp import web

from aiosite.apps import AppRegistry, ContextProcessor
from aiosite.battery import Battery
from aiosite.handlers import request_of
from aiosite.keys import TEMPLATE_GLOBALS
from aiosite.settings import Section, Settings
from aiosite.web.template_modes import AsyncAnalysis, NeedsAsync, SiteEnvironment, sync_twin

BUILTIN_TEMPLATES = Path(__file__).parent / "templates"
PLAIN_TEXT_EXTENSIONS = ("txt", "text", "md", "csv")

HandlerT = TypeVar("HandlerT", bound=Callable[..., Awaitable[Any]])

logger = logging.getLogger("aiosite.templates")


class TemplateSettings(Section):
    """The ``templates:`` section."""

    # None: follow debug.enabled (re-read changed templates while debugging).
    auto_reload: bool | None = None
    # "auto": a template that awaits nothing renders synchronously (a third less CPU);
    # "always": every template renders in Jinja2's async mode.
    async_rendering: Literal["auto", "always"] = "auto"


@dataclass(slots=True)
class _Loaded:
    """A compiled template, and how it renders."""

    template: jinja2.Template  # what renders: from the async environment or the sync one
    is_async: bool
    # The same template compiled for async mode, should a sync render meet an async value.
    async_template: jinja2.Template
    # Besides the template's own: the sources its sync/async decision read.
    sources: tuple[Callable[[], bool], ...] = ()

    def is_up_to_date(self) -> bool:
        return self.template.is_up_to_date and all(check() for check in self.sources)


class Templates:
    """The site's Jinja2 environments and its context processors.

    ``env`` is the async environment: globals and filters are added to it (and shared
    with ``sync_env``, the synchronous twin); ``aiosite check`` compiles with it. Without
    a ``sync_env`` every template renders asynchronously.
    """

    def __init__(
        self,
        env: jinja2.Environment,
        processors: Sequence[ContextProcessor],
        *,
        sync_env: jinja2.Environment | None = None,
    ) -> None:
        self.env = env
        self.sync_env = sync_env
        self.processors = tuple(processors)
        self._loaded: dict[str | tuple[str, ...], _Loaded] = {}

    async def renders_async(self, name: str | Sequence[str]) -> bool:
        """Whether the template ``name`` renders in Jinja2's async mode."""
        return (await self._get(name)).is_async

    async def _get(self, name: str | Sequence[str]) -> _Loaded:
        # Compiling (tens of milliseconds for a large template) happens in a thread, so
        # a first render never blocks the event loop.
        key = name if isinstance(name, str) else tuple(name)
        loaded = self._loaded.get(key)
        if loaded is None or (self.env.auto_reload and not loaded.is_up_to_date()):
            loaded = self._loaded[key] = await asyncio.to_thread(self._load, key)
        return loaded

    def _load(self, key: str | tuple[str, ...]) -> _Loaded:
        # Compiled for async mode first, whatever it turns out to need: compiling calls
        # the filters and tests applied to constants ({{ "a"|f }}), and an async one
        # must not be called by a synchronous compile.
        template = _get_template(self.env, key)
        if self.sync_env is None or template.name is None:
            return _Loaded(template, True, template)
        analysis = AsyncAnalysis(self.env)
        reason = analysis.reason(template.name)
        if reason is not None:
            logger.debug("template %s renders asynchronously: %s", template.name, reason)
            return _Loaded(template, True, template)
        sync_template = self.sync_env.get_template(template.name)
        return _Loaded(sync_template, False, template, tuple(analysis.uptodate))

    async def _render_async_instead(
        self,
        key: str | Sequence[str],
        loaded: _Loaded,
        context: dict[str, Any],
        cause: Exception,
    ) -> str:
        """Render asynchronously a template whose synchronous render met an awaitable
        value (NeedsAsync) or an async iterable in a loop, and keep it asynchronous if
        that works."""
        template = loaded.async_template
        text = await template.render_async(context)
        logger.debug("template %s renders asynchronously from now on: %s", template.name, cause)
        cache_key = key if isinstance(key, str) else tuple(key)
        if self._loaded.get(cache_key) is loaded:
            self._loaded[cache_key] = _Loaded(template, True, template, loaded.sources)
        return text

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
        loaded = await self._get(name)
        merged = await self.context(request, context)
        if loaded.is_async or _needs_async_render(merged):
            return await loaded.async_template.render_async(merged)
        try:
            return loaded.template.render(merged)
        except NeedsAsync as exc:
            return await self._render_async_instead(name, loaded, merged, exc)
        except TypeError as exc:
            if not _async_value_refused(exc):
                raise  # the template's own error: rendered once, raised as it is
            return await self._render_async_instead(name, loaded, merged, exc)


# Per type: whether its values rule out a synchronous first render (see below).
_ONE_SHOT_TYPES: dict[type, bool] = {}


def _needs_async_render(context: Mapping[str, Any]) -> bool:
    """Whether a value handed to the template rules out a synchronous first try: an async
    iterable, or an iterator that a render stopped half-way would leave half-consumed
    for the async render that follows (a generator, a SQLAlchemy result)."""
    for value in context.values():
        kind = type(value)
        one_shot = _ONE_SHOT_TYPES.get(kind)
        if one_shot is None:
            if len(_ONE_SHOT_TYPES) >= 10_000:  # classes made at run time
                _ONE_SHOT_TYPES.clear()
            one_shot = hasattr(kind, "__aiter__") or hasattr(kind, "__next__")
            _ONE_SHOT_TYPES[kind] = one_shot
        if one_shot:
            return True
    return False


def _async_value_refused(exc: TypeError) -> bool:
    # What a synchronous loop or filter says of an async iterable: "'async_generator'
    # object is not iterable"; any other TypeError is the template's own.
    message = str(exc)
    return "async" in message and "not iterable" in message


def _get_template(env: jinja2.Environment, key: str | tuple[str, ...]) -> jinja2.Template:
    if isinstance(key, str):
        return env.get_template(key)
    return env.select_template(list(key))


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
    env = SiteEnvironment(
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
    rendering = settings.section(TemplateSettings).async_rendering
    sync_env = sync_twin(env) if rendering == "auto" else None
    app[TEMPLATES] = Templates(env, processors, sync_env=sync_env)
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
