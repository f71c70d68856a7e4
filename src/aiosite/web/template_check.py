"""What ``aiosite check`` finds in templates before a visitor does: every template the site
can load is compiled, and ``url('name', ...)`` and ``static('path')`` calls whose
arguments are literals (found by ``aiosite.web.template_walk``) are checked against the
site's routes and static files, and against the static manifest when it is on.
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
from aiosite.web.template_walk import literal_calls, parsed_templates
from aiosite.web.templates import TEMPLATES
from aiosite.web.urls import url_for, url_global


def template_problems(app: web.Application, project_dir: Path) -> list[str]:
    """One error, ``"template FILE:LINE: what"``, per syntax error, unknown route name,
    route call missing a parameter, or static file that is not there (or, with the
    manifest on, not in the manifest)."""
    env = app[TEMPLATES].env
    problems: list[str] = []
    for parsed in parsed_templates(env):
        if parsed.tree is None and parsed.error_line is None:
            problems.append(f"template {parsed.name}: {parsed.error}")
            continue
        shown = project_relative(parsed.filename, project_dir)
        if parsed.tree is None:
            problems.append(f"template {shown}:{parsed.error_line}: {parsed.error}")
            continue
        try:
            env.compile(parsed.tree, parsed.name, parsed.filename)
        except jinja2.TemplateSyntaxError as exc:
            problems.append(f"template {shown}:{exc.lineno}: {exc.message}")
            continue
        for line, message in _reference_problems(app, env, parsed.tree, project_dir):
            problems.append(f"template {shown}:{line}: {message}")
    return problems


def _reference_problems(
    app: web.Application, env: jinja2.Environment, tree: nodes.Template, project_dir: Path
) -> Iterator[tuple[int, str]]:
    # An app may bring its own url() or static() (a CDN's, say): only aiosite's are known.
    callees = []
    if env.globals.get("url") is url_global:
        callees.append("url")
    files = app.get(STATIC_FILES) if env.globals.get("static") is static_global else None
    if files is not None:
        callees.append("static")
    for found in literal_calls(tree, callees):
        if found.callee == "url":
            problem = _route_problem(app, found.call, found.value)
        elif files is not None:
            problem = _static_problem(files, found.value, project_dir)
        else:
            continue
        if problem is not None:
            yield found.line, problem


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
    relative = path.lstrip("/")
    if files.find_source(relative) is None:
        folders = ", ".join(project_relative(root, project_dir) for root in files.sources)
        return f"static({path!r}): no such file in the static folders ({folders or 'none'})"
    return files.manifest_problem(relative)
