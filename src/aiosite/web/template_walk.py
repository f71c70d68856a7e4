"""Walking the site's templates and finding calls such as ``static('blog/site.css')``
whose first argument is a literal: what ``aiosite check`` checks, and what the static
battery checks against its manifest when a production site starts.

The calls are found in Jinja2's syntax tree, not by pattern matching: a call counts when
its callee is a global of the given name and its first argument a string constant. A
template that binds the name itself (``{% set url = ... %}``, a macro argument, a loop
variable, ``{% from ... import url %}``) calls its own, which is not counted.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass

import jinja2
from jinja2 import nodes


@dataclass(frozen=True, slots=True)
class ParsedTemplate:
    """A template the site can load: its syntax tree, or why it has none."""

    name: str
    filename: str  # its file, or its name when the loader has no file
    tree: nodes.Template | None
    error: str | None = None  # "not UTF-8 text", or a syntax error's message
    error_line: int | None = None


@dataclass(frozen=True, slots=True)
class LiteralCall:
    """``callee('value', ...)`` at ``line``."""

    callee: str
    value: str
    line: int
    call: nodes.Call


def parsed_templates(env: jinja2.Environment) -> Iterator[ParsedTemplate]:
    """Every template ``env`` can load (hidden names left out), parsed."""
    loader = env.loader
    if loader is None:
        return
    for name in env.list_templates(filter_func=lambda n: not n.startswith(".")):
        try:
            source, filename, _ = loader.get_source(env, name)
        except UnicodeDecodeError:
            yield ParsedTemplate(name, name, None, "not UTF-8 text")
            continue
        try:
            tree = env.parse(source, name, filename)
        except jinja2.TemplateSyntaxError as exc:
            yield ParsedTemplate(name, filename or name, None, exc.message, exc.lineno)
            continue
        yield ParsedTemplate(name, filename or name, tree)


def literal_calls(tree: nodes.Template, callees: Collection[str]) -> Iterator[LiteralCall]:
    """The calls in ``tree`` of the globals named ``callees`` whose first argument is a
    string literal; a name the template binds itself is not a global there."""
    wanted = set(callees) - bound_names(tree)
    if not wanted:
        return
    for call in tree.find_all(nodes.Call):
        if not isinstance(call.node, nodes.Name) or call.node.name not in wanted or not call.args:
            continue
        first = call.args[0]
        if isinstance(first, nodes.Const) and isinstance(first.value, str):
            yield LiteralCall(call.node.name, first.value, call.lineno, call)


def bound_names(tree: nodes.Template) -> set[str]:
    """The names the template binds anywhere: assigned (``set``, ``for``, ``with``),
    macros and their parameters (and a call block's), and imports."""
    bound = {name.name for name in tree.find_all(nodes.Name) if name.ctx in ("store", "param")}
    bound.update(macro.name for macro in tree.find_all(nodes.Macro))
    for imported in tree.find_all(nodes.FromImport):
        bound.update(item if isinstance(item, str) else item[1] for item in imported.names)
    bound.update(module.target for module in tree.find_all(nodes.Import))
    return bound
