"""``aiosite check``: problems a site would otherwise show only at run time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import jinja2
from aiohttp import web

from aiosite.exceptions import AiositeError
from aiosite.keys import APPS, TEMPLATES
from aiosite.settings import Settings
from aiosite.site import create_site


@dataclass(frozen=True, slots=True)
class Problem:
    level: Literal["error", "warning"]
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.message}"


def run_checks(settings: Settings) -> list[Problem]:
    """Build the site from ``settings`` and inspect its apps, routes and templates."""
    try:
        app = create_site(settings)
    except AiositeError as exc:
        return [Problem("error", line) for line in str(exc).splitlines()]
    return [*_check_templates(app), *_check_namespaces(app)]


def _check_templates(app: web.Application) -> list[Problem]:
    env = app[TEMPLATES].env
    problems = []
    for name in env.list_templates(filter_func=lambda n: not n.startswith(".")):
        try:
            env.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            where = f"{name}:{exc.lineno}"
            problems.append(Problem("error", f"template {where}: {exc.message}"))
        except UnicodeDecodeError:
            problems.append(Problem("error", f"template {name}: not UTF-8 text"))
    return problems


def _check_namespaces(app: web.Application) -> list[Problem]:
    # An app's templates and static files live under a folder named after the app, so
    # that two apps' "index.html" do not shadow each other.
    problems = []
    for loaded in app[APPS]:
        for kind in ("templates", "static"):
            directory = loaded.directory(kind)
            if directory is None:
                continue
            stray = sorted(
                p.name
                for p in directory.iterdir()
                if p.name != loaded.name and not p.name.startswith(".")
            )
            if stray:
                problems.append(
                    Problem(
                        "warning",
                        f"app {loaded.name!r}: {kind}/ holds {', '.join(stray)} outside "
                        f"{kind}/{loaded.name}/; other apps or the project may shadow them",
                    )
                )
    return problems
