"""What a project or app may be called."""

from __future__ import annotations

import importlib.util
import keyword
import re
import sys

from aiosite.exceptions import CommandError

# ASCII only: the name becomes a package, a URL prefix and an app name (aiosite.apps
# accepts ASCII identifiers).
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Top-level directories of a project: a package of that name would collide with them.
_PROJECT_RESERVED = frozenset({"config", "tests", "migrations"})
# Entries of the project package itself: an app of that name would collide with them.
_APP_RESERVED = frozenset({"templates", "static", "site", "tests"})


def _check_identifier(name: str, what: str, example: str) -> None:
    if not _IDENTIFIER.match(name):
        raise CommandError(
            f"{name!r} is not a valid {what} name: use ASCII letters, digits and underscores, "
            f"not starting with a digit (e.g. {example!r})"
        )
    if keyword.iskeyword(name):
        raise CommandError(f"{name!r} is a Python keyword; choose another {what} name")
    if name.startswith("__"):
        raise CommandError(f"{name!r}: a {what} name may not start with '__'")


def check_project_name(name: str) -> None:
    """Raise CommandError unless ``name`` can be the project's top-level package."""
    _check_identifier(name, "project", "mysite")
    if name in _PROJECT_RESERVED:
        raise CommandError(
            f"{name!r} is the name of a directory in every project; choose another project name"
        )
    if _shadows_module(name):
        raise CommandError(
            f"{name!r} is the name of an existing Python module; the project's package would "
            "shadow it (or be shadowed by it): choose another project name"
        )


def check_app_name(name: str) -> None:
    """Raise CommandError unless ``name`` can be an app inside the project package."""
    _check_identifier(name, "app", "blog")
    if name in _APP_RESERVED:
        raise CommandError(
            f"{name!r} is already used by the project package itself ({name}/ or {name}.py); "
            "choose another app name"
        )


def _shadows_module(name: str) -> bool:
    if name in sys.stdlib_module_names or name in sys.builtin_module_names:
        return True
    if name in sys.modules:
        return True
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    # An empty directory on sys.path imports as a namespace package; that is no module.
    return not (spec.origin is None and spec.submodule_search_locations is not None)
