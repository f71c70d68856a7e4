"""The environments templates render in, and which one each template renders in.

Jinja2's async mode awaits the result of every call, attribute and filter and iterates
every loop with ``async for``: rendering a page of a dozen rows that way costs about half
again as much CPU as rendering it synchronously. Most templates await nothing, so each
template is looked at once, when it is first loaded: it renders synchronously unless it,
or a template it extends, includes or imports, uses an async global, filter or test
(``csrf_input()``, ``flashed_messages()``, ``has_perm()``, an app's ``async def``), or
names a template it extends, includes or imports at render time (``{% include name %}``).

Values that only the render shows are async are caught while rendering synchronously: a
call, an attribute or an item that gives an awaitable stops the render
(``NeedsAsync``), as does the ``TypeError`` of an async iterable in a loop, and the
template is rendered again asynchronously and stays asynchronous from then on. A context
holding an iterator or an async iterable is rendered asynchronously straight away: a
stopped render would have consumed part of it. Any other ``TypeError`` is the
template's own, raised from its one render.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, MutableMapping
from types import GeneratorType
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.runtime import Context


class NeedsAsync(Exception):
    """Raised by a synchronous render that met an awaitable value."""


# Whether values of a type are awaitable, learnt per type (a dict lookup per value: a
# WeakKeyDictionary would make a weak reference per lookup on the hottest path). Emptied
# when it grows past what a site's own types explain (classes made at run time).
_AWAITABLE_TYPES: dict[type, bool] = {}
_MOST_TYPES = 10_000


def _stop_if_awaitable(value: Any) -> None:
    awaitable = _AWAITABLE_TYPES.get(value.__class__)
    if awaitable is None:
        kind = value.__class__
        # A generator may be a generator-based coroutine: asked per value, not per type.
        if kind is GeneratorType:
            awaitable = inspect.isawaitable(value)
        else:
            if len(_AWAITABLE_TYPES) >= _MOST_TYPES:
                _AWAITABLE_TYPES.clear()
            awaitable = _AWAITABLE_TYPES[kind] = hasattr(kind, "__await__")
    if awaitable:
        if inspect.iscoroutine(value):
            value.close()  # never awaited, on purpose: the async render calls it again
        raise NeedsAsync(f"the template met an awaitable {type(value).__name__}")


class SiteEnvironment(jinja2.Environment):
    """Jinja2's environment, with templates that read its globals directly.

    Since Jinja2 3.0 each template's globals are a ``ChainMap`` in front of the
    environment's (so that ``get_template(name, globals=...)`` cannot change the
    environment's), and every render copies them into a new dict through the
    ``ChainMap``'s Python methods: a tenth of the render of a small page with aiosite's
    dozen globals. aiosite never passes ``globals=``, so a template gets the
    environment's own dict, as in Jinja2 2.x.
    """

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        if d:
            return super().make_globals(d)
        return self.globals


class SyncContext(Context):
    """A render context whose calls stop the render when they return an awaitable."""

    def call(__self, __obj: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        value = Context.call(__self, __obj, *args, **kwargs)
        _stop_if_awaitable(value)
        return value


class SyncEnvironment(SiteEnvironment):
    """The synchronous twin of the site's async environment (see ``sync_twin``).

    Async mode awaits what a call, an attribute or an item gives; here such a value stops
    the render (``NeedsAsync``) instead of being shown as ``<coroutine object ...>``.
    """

    context_class = SyncContext

    # Jinja2's getattr, written out with the check added: the hottest call of a render.
    def getattr(self, obj: Any, attribute: str) -> Any:
        try:
            value = getattr(obj, attribute)
        except AttributeError:
            try:
                value = obj[attribute]
            except (TypeError, LookupError, AttributeError):
                return self.undefined(obj=obj, name=attribute)
        _stop_if_awaitable(value)
        return value

    def getitem(self, obj: Any, argument: Any) -> Any:
        value = super().getitem(obj, argument)
        _stop_if_awaitable(value)
        return value


def sync_twin(env: jinja2.Environment) -> SyncEnvironment:
    """A synchronous environment with ``env``'s options, sharing its loader, globals,
    filters, tests and policies (globals added to ``env`` later are seen by both)."""
    twin = SyncEnvironment(
        block_start_string=env.block_start_string,
        block_end_string=env.block_end_string,
        variable_start_string=env.variable_start_string,
        variable_end_string=env.variable_end_string,
        comment_start_string=env.comment_start_string,
        comment_end_string=env.comment_end_string,
        line_statement_prefix=env.line_statement_prefix,
        line_comment_prefix=env.line_comment_prefix,
        trim_blocks=env.trim_blocks,
        lstrip_blocks=env.lstrip_blocks,
        newline_sequence=env.newline_sequence,
        keep_trailing_newline=env.keep_trailing_newline,
        extensions=tuple(env.extensions),  # by import name: the twin gets its own
        optimized=env.optimized,
        undefined=env.undefined,
        finalize=env.finalize,
        autoescape=env.autoescape,
        loader=env.loader,
        auto_reload=env.auto_reload,
        bytecode_cache=env.bytecode_cache,
        enable_async=False,
    )
    twin.globals = env.globals
    twin.filters = env.filters
    twin.tests = env.tests
    twin.policies = env.policies
    return twin


def is_async_callable(value: Any) -> bool:
    """An ``async def`` function (or async generator), or an object whose ``__call__`` is."""
    if inspect.iscoroutinefunction(value) or inspect.isasyncgenfunction(value):
        return True
    if isinstance(value, type):
        return False
    call = getattr(type(value), "__call__", None)  # noqa: B004
    return call is not None and (
        inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call)
    )


class AsyncAnalysis:
    """Decides, from the templates' syntax trees, which need async rendering."""

    def __init__(self, env: jinja2.Environment) -> None:
        self.env = env
        self.async_globals = {n for n, v in env.globals.items() if is_async_callable(v)}
        self.async_filters = {n for n, v in env.filters.items() if is_async_callable(v)}
        self.async_tests = {n for n, v in env.tests.items() if is_async_callable(v)}
        self._decided: dict[str, str | None] = {}
        # The up-to-date checks of every template read: with auto_reload, a change to
        # any of them (an include that starts calling csrf_input()) decides again.
        self.uptodate: list[Callable[[], bool]] = []

    def reason(self, name: str) -> str | None:
        """Why template ``name`` needs async rendering, or None when it does not."""
        if name in self._decided:
            # Decided, or being decided (a template including itself decides nothing).
            return self._decided[name]
        self._decided[name] = None
        loader = self.env.loader
        if loader is None:
            return None
        try:
            source, filename, uptodate = loader.get_source(self.env, name)
            tree = self.env.parse(source, name, filename)
        except (jinja2.TemplateNotFound, jinja2.TemplateSyntaxError):
            # Rendering it fails in either mode, with the same error.
            return None
        if uptodate is not None:
            self.uptodate.append(uptodate)
        reason = next(self._reasons(tree), None)
        self._decided[name] = reason
        return reason

    def _reasons(self, tree: nodes.Template) -> Iterator[str]:
        for node in tree.find_all(
            (
                nodes.Name,
                nodes.Filter,
                nodes.Test,
                nodes.Extends,
                nodes.Include,
                nodes.Import,
                nodes.FromImport,
            )
        ):
            line = f"line {node.lineno}"
            if isinstance(node, nodes.Name):
                if node.ctx == "load" and node.name in self.async_globals:
                    yield f"{line}: {node.name} is an async function"
            elif isinstance(node, nodes.Filter):
                if node.name in self.async_filters:
                    yield f"{line}: filter {node.name} is an async function"
            elif isinstance(node, nodes.Test):
                if node.name in self.async_tests:
                    yield f"{line}: test {node.name} is an async function"
            else:
                yield from self._dependency_reasons(node, line)

    def _dependency_reasons(self, node: nodes.Node, line: str) -> Iterator[str]:
        names = _constant_names(node.template)  # type: ignore[attr-defined]
        if names is None:
            yield f"{line}: the template it {_verb(node)} is named at render time"
            return
        for name in names:
            reason = self.reason(name)
            if reason is not None:
                yield f"{line}: it {_verb(node)} {name} ({reason})"


def _verb(node: nodes.Node) -> str:
    if isinstance(node, nodes.Extends):
        return "extends"
    if isinstance(node, nodes.Include):
        return "includes"
    return "imports"


def _constant_names(expr: nodes.Expr) -> list[str] | None:
    """The template names ``expr`` writes out (a string, or a list of them), else None."""
    if isinstance(expr, nodes.Const) and isinstance(expr.value, str):
        return [expr.value]
    if isinstance(expr, nodes.List | nodes.Tuple):
        names = [item.value for item in expr.items if isinstance(item, nodes.Const)]
        if len(names) == len(expr.items) and all(isinstance(n, str) for n in names):
            return names
    return None
