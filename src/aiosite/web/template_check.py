"""What ``aiosite check`` finds in templates before a visitor does: every template the site
can load is compiled, and ``url('name', ...)`` and ``static('path')`` calls whose
arguments are literals are checked against the site's routes and static files.

The calls are found in Jinja2's syntax tree, not by pattern matching: a call counts when
its callee is the global ``url`` or ``static`` and its first argument a string constant. A
template that binds the name itself (``{% set url = ... %}``, a macro argument, a loop
variable, ``{% from ... import url %}``) calls its own, which is not checked.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import jinja2
from aiohttp import web
from jinja2 import nodes

from aiosite.exceptions import NoReverseMatch
from aiosite.settings import project_relative
from aiosite.web.static import STATIC_FILES, StaticFiles, static_global
from aiosite.web.templates import TEMPLATES
from aiosite.web.urls import url_for, url_global


def template_problems(app: web.Application, project_dir: Path) -> list[str]:
    """One error, ``"template FILE:LINE: what"``, per syntax error, unknown route name,
    route call missing a parameter, or static file that is not there."""
    env = app[TEMPLATES].env
    loader = env.loader
    if loader is None:
        return []
    problems: list[str] = []
    for name in env.list_templates(filter_func=lambda n: not n.startswith(".")):
        try:
            source, filename, _ = loader.get_source(env, name)
        except UnicodeDecodeError:
            problems.append(f"template {name}: not UTF-8 text")
            continue
        shown = project_relative(filename or name, project_dir)
        try:
            tree = env.parse(source, name, filename)
            env.compile(tree, name, filename)
        except jinja2.TemplateSyntaxError as exc:
            problems.append(f"template {shown}:{exc.lineno}: {exc.message}")
            continue
        for line, message in _reference_problems(app, env, tree, project_dir):
            problems.append(f"template {shown}:{line}: {message}")
    return problems


def _reference_problems(
    app: web.Application, env: jinja2.Environment, tree: nodes.Template, project_dir: Path
) -> Iterator[tuple[int, str]]:
    # An app may bring its own url() or static() (a CDN's, say): only aiosite's are known.
    # A template that binds the name (set, a macro argument, a loop, an import) calls its own.
    bound = _bound_names(tree)
    check_urls = env.globals.get("url") is url_global and "url" not in bound
    ours = env.globals.get("static") is static_global and "static" not in bound
    files = app.get(STATIC_FILES) if ours else None
    for call in tree.find_all(nodes.Call):
        if not isinstance(call.node, nodes.Name) or not call.args:
            continue
        first = call.args[0]
        if not isinstance(first, nodes.Const) or not isinstance(first.value, str):
            continue
        if call.node.name == "url" and check_urls:
            problem = _route_problem(app, call, first.value)
        elif call.node.name == "static" and files is not None:
            problem = _static_problem(files, first.value, project_dir)
        else:
            continue
        if problem is not None:
            yield call.lineno, problem


def _bound_names(tree: nodes.Template) -> set[str]:
    """The names the template binds anywhere: assigned (``set``, ``for``, ``with``),
    macros and their parameters (and a call block's), and imports."""
    bound = {name.name for name in tree.find_all(nodes.Name) if name.ctx in ("store", "param")}
    bound.update(macro.name for macro in tree.find_all(nodes.Macro))
    for imported in tree.find_all(nodes.FromImport):
        bound.update(item if isinstance(item, str) else item[1] for item in imported.names)
    bound.update(module.target for module in tree.find_all(nodes.Import))
    return bound


def _route_problem(app: web.Application, call: nodes.Call, name: str) -> str | None:
    # Placeholders can be checked only when every keyword is written out.
    params = {keyword.key: "x" for keyword in call.kwargs} if call.dyn_kwargs is None else None
    try:
        if params is None:
            if name not in app.router.named_resources():
                url_for(app, name)  # raises, with "did you mean"
        else:
            url_for(app, name, **params)
    except NoReverseMatch as exc:
        return f"url({name!r}): {exc}"
    return None


def _static_problem(files: StaticFiles, path: str, project_dir: Path) -> str | None:
    if files.find(path.lstrip("/")) is not None:
        return None
    folders = ", ".join(project_relative(root, project_dir) for root in files.roots) or "none"
    return f"static({path!r}): no such file in the static folders ({folders})"
