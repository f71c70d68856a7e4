"""Write a new project or app from the templates under ``files/``."""

from __future__ import annotations

import importlib.metadata
import re
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path

from aiosite.exceptions import CommandError
from aiosite.scaffold.apps_yaml import add_app
from aiosite.scaffold.names import check_app_name, check_project_name
from aiosite.settings import INSECURE_KEY_PREFIX

FILES = Path(__file__).parent / "files"
PROJECT_TEMPLATE = FILES / "project"
APP_TEMPLATE = FILES / "app"
MIGRATIONS_TEMPLATE = PROJECT_TEMPLATE / "migrations"

# Path parts named PACKAGE or APP (or APP.css) take the project's or the app's name.
_PATH_TOKEN = re.compile(r"\b(PACKAGE|APP)\b")
SUFFIX = ".tmpl"
DOT_PREFIX = "dot-"  # dot-gitignore -> .gitignore: dotfiles are easy to lose in packaging


def render_tree(source: Path, target: Path, tokens: Mapping[str, str]) -> list[Path]:
    """Copy ``source`` into ``target``, replacing ``@@TOKEN@@`` in contents and names."""
    written = []
    for path in sorted(source.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        parts = [_render_name(part, tokens) for part in path.relative_to(source).parts]
        destination = target.joinpath(*parts)
        text = path.read_text(encoding="utf-8")
        for token, value in tokens.items():
            text = text.replace(f"@@{token}@@", value)
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(text, encoding="utf-8", newline="\n")
        written.append(destination)
    return written


def _render_name(part: str, tokens: Mapping[str, str]) -> str:
    part = part.removesuffix(SUFFIX)
    if part.startswith(DOT_PREFIX):
        part = "." + part.removeprefix(DOT_PREFIX)
    return _PATH_TOKEN.sub(lambda match: tokens[match.group(1)], part)


def title(name: str) -> str:
    """``my_site`` -> ``My Site``: a readable default for a site's or page's title."""
    return " ".join(word.capitalize() for word in name.split("_") if word) or name


def _aiosite_version() -> str:
    try:
        return importlib.metadata.version("aiosite")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a tree
        return "0.1.0"


def development_secret_key() -> str:
    """A random key for development.yaml or test.yaml; its prefix makes any environment
    other than development and test refuse it."""
    return INSECURE_KEY_PREFIX + secrets.token_urlsafe(40)


def create_project(name: str, directory: Path) -> Path:
    """Write the project ``name`` into ``directory`` (which must not exist or be empty)."""
    check_project_name(name)
    target = directory.absolute()
    if target.exists():
        if not target.is_dir():
            raise CommandError(f"{directory} exists and is not a directory")
        if any(target.iterdir()):
            raise CommandError(
                f"{directory} already exists and is not empty; "
                "choose another directory or remove that one"
            )
    tokens = {
        "PACKAGE": name,
        "SITE_NAME": title(name),
        "DIST_NAME": name.replace("_", "-"),
        "AIOSITE_VERSION": _aiosite_version(),
        # One key for each environment, new for each project: a key never goes from one
        # checkout to another or from the tests to a running site.
        "DEVELOPMENT_SECRET_KEY": development_secret_key(),
        "TEST_SECRET_KEY": development_secret_key(),
    }
    render_tree(PROJECT_TEMPLATE, target, tokens)
    return target


def create_app(project_dir: Path, package: str, name: str, listed: Sequence[str] = ()) -> Path:
    """Write the app ``name`` into the project package and add it to ``apps:``.

    ``listed`` is the site's current ``apps:`` (all layers); an app whose package ends
    in the same name would clash with the new one.
    """
    check_app_name(name)
    dotted = f"{package}.{name}"
    for entry in listed:
        if entry == dotted or entry.rpartition(".")[2] == name:
            raise CommandError(
                f"an app named {name!r} is already listed in apps: ({entry}); "
                "choose another app name"
            )
    package_dir = project_dir.joinpath(*package.split("."))
    if not package_dir.is_dir():
        raise CommandError(
            f"the project package {package!r} (site.package) is not a directory in {project_dir}"
        )
    app_dir = package_dir / name
    if app_dir.exists():
        raise CommandError(
            f"{app_dir.relative_to(project_dir)} already exists; choose another app name"
        )
    config = project_dir / "config" / "default.yaml"
    try:
        with config.open(encoding="utf-8", newline="") as file:
            text = file.read()
    except OSError as exc:
        raise CommandError(f"cannot read {config}: {exc.strerror or exc}") from None
    # Edit (and verify) the settings before writing anything, so a failure leaves no trace.
    updated = add_app(text, dotted)
    render_tree(APP_TEMPLATE, app_dir, {"PACKAGE": package, "APP": name, "APP_TITLE": title(name)})
    with config.open("w", encoding="utf-8", newline="") as file:
        file.write(updated)
    return app_dir


def create_migrations(project_dir: Path) -> Path:
    """Write the ``migrations/`` folder (Alembic's env.py and file template) into an
    existing project; a project made by ``aiosite new`` already has one."""
    target = project_dir / MIGRATIONS_TEMPLATE.name
    if (target / "env.py").exists():
        raise CommandError(f"{target} already has an env.py; nothing to do")
    render_tree(MIGRATIONS_TEMPLATE, target, {})
    return target
