"""App declarations and the registry of the apps a site lists in its settings.

Nothing is found by scanning and nothing registers itself at import time: the site
factory reads ``apps:`` from the settings, imports each package in order, and asks it
for its parts (``routes``, ``models``, ``templates/``, ``static/``).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import pkgutil
import re
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from aiosite.exceptions import CommandError, ImproperlyConfigured
from aiosite.keys import state_of
from aiosite.settings import Section, Settings, project_relative

if TYPE_CHECKING:
    import typer

ContextProcessor = Callable[[web.Request], Mapping[str, Any] | Awaitable[Mapping[str, Any]]]
# An app's (or the project's site.py) setup: ``setup(app, settings, registry)``, run once
# while the site is assembled, after every battery, in the order of ``apps:``.
AppHook = Callable[[web.Application, Settings, "AppRegistry"], None]

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PREFIX_RE = re.compile(r"^(/[A-Za-z0-9._~-]+)*$")


@dataclass(frozen=True, slots=True)
class App:
    """What an app package declares as ``app = App(...)`` in its ``__init__.py``.

    ``prefix`` is where its routes are mounted: ``None`` means ``/<name>``, ``""`` the
    site root. ``api=True`` makes its errors JSON. ``settings`` is the model of its own
    settings section, the key named after the app (``settings.section(Model)`` reads
    it). ``setup(app, settings, registry)`` runs once, while the site is assembled, for
    anything the declaration cannot say: hooks (``aiosite.hooks_of(app)``), keys,
    startup and cleanup work. ``commands`` is a ``typer.Typer``, or the path of one
    (``"package.module:attribute"``), imported only when a command line needs the app's
    commands: then the site itself never imports Typer.
    """

    name: str
    prefix: str | None = None
    api: bool = False
    context_processors: Sequence[ContextProcessor] = ()
    template_globals: Mapping[str, Any] = field(default_factory=dict)
    template_filters: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    commands: typer.Typer | str | None = None
    setup: AppHook | None = None
    settings: type[Section] | None = None

    @property
    def url_prefix(self) -> str:
        return f"/{self.name}" if self.prefix is None else self.prefix.rstrip("/")


@dataclass(frozen=True, slots=True)
class LoadedApp:
    """An imported app: its declaration, its package and the parts it has."""

    config: App
    module: ModuleType
    path: Path
    routes_module: ModuleType | None
    models_module: ModuleType | None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def package(self) -> str:
        return self.module.__name__

    def directory(self, kind: str) -> Path | None:
        """The app's ``templates`` or ``static`` folder, if it has one."""
        path = self.path / kind
        return path if path.is_dir() else None


@dataclass(frozen=True, slots=True)
class ProjectHooks:
    """The optional hooks of the project's ``<package>/site.py``."""

    package: ModuleType | None = None
    middlewares: Sequence[Any] = ()
    context_processors: Sequence[ContextProcessor] = ()
    setup: AppHook | None = None

    @property
    def path(self) -> Path | None:
        if self.package is None or self.package.__file__ is None:
            return None
        return Path(self.package.__file__).parent


class AppRegistry(Sequence[LoadedApp]):
    """The site's apps in settings order, with the project's hooks."""

    def __init__(self, apps: Sequence[LoadedApp], project: ProjectHooks) -> None:
        self._apps = tuple(apps)
        self._by_name = {app.name: app for app in self._apps}
        self.project = project

    def __getitem__(self, index: Any) -> Any:
        return self._apps[index]

    def __len__(self) -> int:
        return len(self._apps)

    def __iter__(self) -> Iterator[LoadedApp]:
        return iter(self._apps)

    def get(self, name: str) -> LoadedApp | None:
        return self._by_name.get(name)

    def search_path(self, kind: str) -> list[Path]:
        """Where ``templates`` or ``static`` files are looked up, first match wins: the
        project package's folder, then each app's in ``apps:`` order."""
        folders = [self.project.path / kind] if self.project.path is not None else []
        folders.extend(app.path / kind for app in self)
        return [folder for folder in folders if folder.is_dir()]


APPS: web.AppKey[AppRegistry] = web.AppKey("aiosite.apps", AppRegistry)


def apps_of(target: web.Request | web.Application) -> AppRegistry:
    """The site's apps, in ``apps:`` order, from a request or the application."""
    registry: AppRegistry = state_of(target)[APPS]
    return registry


class _CommandState(Protocol):
    def settings(self) -> Settings: ...


def command_settings(ctx: typer.Context) -> Settings:
    """In an app's CLI command (``App(commands=...)``): the settings of the project the
    ``aiosite`` command runs in, ``--project`` and ``--env`` honoured."""
    state: _CommandState | None = ctx.find_root().obj
    if state is None:
        raise CommandError("run this command through `aiosite` inside a project")
    return state.settings()


def ensure_importable(project_dir: Path) -> None:
    """Put the project directory on ``sys.path`` so its package and apps import."""
    path = str(project_dir)
    if path not in sys.path:
        sys.path.insert(0, path)


def load_apps(settings: Settings) -> AppRegistry:
    """Import every app listed in the settings; raise ImproperlyConfigured on a clash."""
    ensure_importable(settings.project_dir)
    loaded: list[LoadedApp] = []
    names: dict[str, str] = {}
    prefixes: dict[str, str] = {}
    for dotted in settings.apps:
        app = _load_app(dotted, settings.project_dir)
        if app.name in names:
            raise ImproperlyConfigured(
                f"apps: {names[app.name]!r} and {dotted!r} are both named {app.name!r}; "
                "give one of them another name in its App(...) declaration"
            )
        prefix = app.config.url_prefix
        if prefix in prefixes:
            shown = prefix or "the site root"
            raise ImproperlyConfigured(
                f"apps: {prefixes[prefix]!r} and {dotted!r} are both mounted at {shown!r}; "
                "give one of them another prefix in its App(...) declaration"
            )
        names[app.name] = dotted
        prefixes[prefix] = dotted
        loaded.append(app)
    return AppRegistry(loaded, load_project_hooks(settings))


def _load_app(dotted: str, project_dir: Path) -> LoadedApp:
    module = _import(dotted, project_dir, what="apps")
    if module.__file__ is None:
        raise ImproperlyConfigured(f"apps: {dotted!r} must be a regular package with __init__.py")
    config = getattr(module, "app", None)
    if config is None:
        config = App(name=dotted.rpartition(".")[2])
    elif not isinstance(config, App):
        raise ImproperlyConfigured(
            f"apps: {dotted}.app must be an aiosite.App(...) declaration, "
            f"not {type(config).__name__}"
        )
    if not _NAME_RE.match(config.name):
        raise ImproperlyConfigured(
            f"apps: {dotted!r} has the name {config.name!r}; an app name must be an identifier"
        )
    if config.settings is not None and not (
        isinstance(config.settings, type) and issubclass(config.settings, Section)
    ):
        raise ImproperlyConfigured(
            f"apps: {dotted}.app: settings= takes a subclass of aiosite.Section, "
            f"not {config.settings!r}"
        )
    _check_setup(config.setup, f"{dotted}.app: App(setup=...)")
    if config.prefix and not _PREFIX_RE.match(config.url_prefix):
        raise ImproperlyConfigured(
            f"apps: {dotted!r} has the prefix {config.prefix!r}; "
            "a prefix looks like '/blog' (or '' for the site root)"
        )
    return LoadedApp(
        config=config,
        module=module,
        path=Path(module.__file__).parent,
        routes_module=_import_optional(f"{dotted}.routes", project_dir),
        models_module=_import_optional(f"{dotted}.models", project_dir),
    )


def load_project_hooks(settings: Settings) -> ProjectHooks:
    package_name = settings.site.package
    if not package_name:
        return ProjectHooks()
    package = _import(package_name, settings.project_dir, what="site.package")
    hooks = _import_optional(f"{package_name}.site", settings.project_dir)
    if hooks is None:
        return ProjectHooks(package=package)
    setup = getattr(hooks, "setup", None)
    _check_setup(setup, f"{package_name}.site.setup")
    return ProjectHooks(
        package=package,
        middlewares=tuple(getattr(hooks, "middlewares", ())),
        context_processors=tuple(getattr(hooks, "context_processors", ())),
        setup=setup,
    )


def _check_setup(setup: Callable[..., object] | None, where: str) -> None:
    """A setup hook must take (app, settings, registry), as every battery's does."""
    if setup is None:
        return
    try:
        inspect.signature(setup).bind(None, None, None)
    except TypeError:
        raise ImproperlyConfigured(
            f"apps: {where} must take (app, settings, registry), as a battery's setup does; "
            "e.g. def setup(app: web.Application, settings: Settings, registry: AppRegistry)"
        ) from None
    except ValueError:  # a callable without a signature (a builtin): let it run
        return


def _import(dotted: str, project_dir: Path, *, what: str) -> ModuleType:
    try:
        return importlib.import_module(dotted)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (exc.name == dotted or dotted.startswith(exc.name + ".")):
            raise ImproperlyConfigured(_no_such_module(dotted, exc.name, what)) from None
        raise ImproperlyConfigured(_failed_inside(dotted, exc, what, project_dir)) from None
    except ImportError as exc:
        raise ImproperlyConfigured(_failed_inside(dotted, exc, what, project_dir)) from None
    except Exception as exc:
        raise ImproperlyConfigured(
            f"{what}: importing {dotted!r} failed: {type(exc).__name__}: {exc}"
        ) from exc


# --- why an import failed ------------------------------------------------------------


def _no_such_module(dotted: str, missing: str, what: str) -> str:
    """The listed module (or a package above it) does not exist: say which, and which
    app was probably meant."""
    parent, _, last = missing.rpartition(".")
    if missing == "aiosite.contrib" or parent == "aiosite.contrib":
        contrib = ", ".join(f"aiosite.contrib.{name}" for name in _packages("aiosite.contrib"))
        return (
            f"{what}: cannot import {dotted!r}: aiosite has no contrib app {last!r} "
            f"(the contrib apps are: {contrib or 'none'})"
        )
    where = f"{missing!r}" if missing == dotted else f"{missing!r} (in {dotted!r})"
    meant = _meant_app(dotted)
    hint = f"; did you mean {meant!r}?" if meant else ""
    return (
        f"{what}: cannot import {dotted!r}: there is no module {where}{hint} "
        "(list an app by its dotted package name, e.g. mysite.blog)"
    )


def _meant_app(dotted: str) -> str | None:
    """The app ``dotted`` is a misspelling of, if one is close: each dotted part in turn,
    kept or corrected against the packages at its level (at the top, the project's
    packages and ``aiosite``, whose only apps are its contrib apps). A name without a dot
    is compared with the project's apps, the contrib apps (``blog`` for ``mysite.blog``)
    and the top-level importable packages."""
    if "." not in dotted:
        return _meant_undotted(dotted)
    choices = [*_project_packages(), "aiosite"]
    meant: list[str] = []
    for part in dotted.split("."):
        if part in choices or (not meant and _installed(part)):
            name: str | None = part
        else:
            name = next(iter(difflib.get_close_matches(part, choices, n=1, cutoff=0.75)), None)
        if name is None:
            return None
        meant.append(name)
        choices = _packages(".".join(meant))
    found = ".".join(meant)
    return found if found != dotted else None


def _meant_undotted(name: str) -> str | None:
    projects = _project_packages()
    candidates = [
        *projects,
        *(f"{project}.{app}" for project in projects for app in _packages(project)),
        *(f"aiosite.contrib.{app}" for app in _packages("aiosite.contrib")),
        *(info.name for info in pkgutil.iter_modules() if info.ispkg),
    ]
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.75)
    if not close:  # `blog` for `mysite.blog`
        by_last = {c.rpartition(".")[2]: c for c in reversed(candidates)}
        close = [by_last[m] for m in difflib.get_close_matches(name, by_last, n=1, cutoff=0.75)]
    return close[0] if close else None


def _failed_inside(dotted: str, exc: ImportError, what: str, project_dir: Path) -> str:
    """The listed module exists, but its own code imports something that does not."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        missing = f"fails to import: {exc}"
    elif _installed(exc.name.partition(".")[0]):
        missing = f"imports {exc.name!r}, which does not exist"
    else:
        missing = f"imports {exc.name!r}, which is not installed (or is misspelled)"
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith("<") and frame.filename != __file__
    ]
    where = (
        f" (at {project_relative(frames[-1].filename, project_dir)}:{frames[-1].lineno})"
        if frames
        else ""
    )
    return f"{what}: {dotted!r} was found, but its code {missing}{where}"


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _packages(package: str) -> list[str]:
    """The packages (not the plain modules) directly inside ``package``; inside
    ``aiosite``, only ``contrib`` (aiosite's other packages are not apps)."""
    if package == "aiosite":
        return ["contrib"]
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return []
    if spec is None or spec.submodule_search_locations is None:
        return []
    return sorted(
        info.name for info in pkgutil.iter_modules(spec.submodule_search_locations) if info.ispkg
    )


def _project_packages() -> list[str]:
    """Packages in the project directories ``ensure_importable`` put on sys.path."""
    found = []
    for entry in sys.path:
        path = Path(entry or ".")
        if (path / "config" / "default.yaml").is_file():
            found += [name for _, name, ispkg in pkgutil.iter_modules([str(path)]) if ispkg]
    return found


def _import_optional(dotted: str, project_dir: Path) -> ModuleType | None:
    """Import ``dotted`` if the module exists; its own import errors still surface."""
    try:
        spec = importlib.util.find_spec(dotted)
    except ModuleNotFoundError:
        return None
    if spec is None:
        return None
    return _import(dotted, project_dir, what="apps")
