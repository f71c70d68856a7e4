"""The one assembly point: settings in, ``aiohttp.web.Application`` out.

A site is its batteries, in the order below, then its apps: each is set up with the same
``setup(app, settings, registry)``, and each battery and app may own a settings section.
"""

from __future__ import annotations

from collections.abc import Collection
from importlib.metadata import entry_points
from pathlib import Path

from aiohttp import web

from aiosite import (
    budgets,
    channels,
    db,
    debug,
    health,
    http,
    metrics,
    ratelimit,
    security,
    sessions,
    uploads,
)
from aiosite.apps import APPS, AppRegistry, load_apps
from aiosite.battery import Battery
from aiosite.exceptions import ImproperlyConfigured
from aiosite.keys import SETTINGS
from aiosite.probes import PROBES, Probes
from aiosite.security import refuse_public_site_without_secret_key
from aiosite.settings import (
    Section,
    Settings,
    UncheckedSection,
    read_settings,
    revalidate,
    settings_class,
)
from aiosite.web import core, routing, static, templates

# Installed packages declare settings sections here: ``name = "package.module:Model"``.
SECTIONS_ENTRY_POINT = "aiosite.settings"
# The order of assembly. The core comes first (everything else hooks into it) and
# templates before what adds template helpers; the order hooks run in is set by their
# names, not by this list, except among hooks that ask for the same place: the handler
# wrappers of metrics, budgets and the debug toolbar are each "before *", so they wrap
# in this order (metrics outermost: it counts the 503 and 504 a budget answers).
BATTERIES: tuple[Battery, ...] = (
    core.battery,
    templates.battery,
    routing.battery,
    static.battery,
    db.battery,
    sessions.battery,
    security.battery,
    uploads.battery,
    ratelimit.battery,
    channels.battery,
    http.battery,
    health.battery,
    metrics.battery,
    budgets.battery,
    debug.battery,
)


def site_sections(
    settings: Settings, named: Collection[str] = (), *, registry: AppRegistry | None = None
) -> dict[str, type[Section]]:
    """The settings sections of the batteries and of the apps ``settings`` lists (their
    ``registry``, loaded here unless given), and of the ``named`` sections that an
    installed package declares (entry points in the group ``aiosite.settings``), so that
    an app is configured before it is listed."""
    owners: dict[str, str] = {}
    sections: dict[str, type[Section]] = {}
    if registry is None:
        try:
            registry = load_apps(settings)
        except ImproperlyConfigured:
            # An app that does not import: building the site (or `aiosite check`) says
            # why; the sections it may own are kept unchecked until then.
            registry = None
    declared = _declared_sections(registry)
    claimed = {name for _, name, _ in declared} | set(Settings.model_fields)
    unclaimed = [name for name in named if name not in claimed]
    declared.extend(installed_sections(unclaimed))
    if registry is None:
        found = {name for _, name, _ in declared}
        declared.extend(("", name, UncheckedSection) for name in unclaimed if name not in found)
    for owner, name, model in declared:
        if name in owners or name in Settings.model_fields:
            holder = owners.get(name, "the site itself")
            raise ImproperlyConfigured(
                f"apps: {owner} declares the settings section {name!r}, which {holder} has; "
                "give the app another name in its App(...) declaration"
            )
        owners[name] = owner
        sections[name] = model
    return sections


def _declared_sections(registry: AppRegistry | None) -> list[tuple[str, str, type[Section]]]:
    """(owner, name, model) of the batteries' sections and the listed apps'."""
    declared = [(b.name, name, model) for b in BATTERIES for name, model in b.sections.items()]
    for loaded in registry or ():
        if loaded.config.settings is not None:
            declared.append((f"the app {loaded.package}", loaded.name, loaded.config.settings))
    return declared


def installed_sections(names: Collection[str]) -> list[tuple[str, str, type[Section]]]:
    """(owner, name, model) of each of ``names`` an installed package declares."""
    if not names:
        return []  # reading the installed packages' metadata costs milliseconds
    found = []
    for entry in entry_points(group=SECTIONS_ENTRY_POINT):
        if entry.name in names:
            package = entry.dist.name if entry.dist is not None else entry.value
            try:
                model = entry.load()
            except Exception as exc:
                raise ImproperlyConfigured(
                    f"{entry.name}: loading the settings section {entry.value} of the "
                    f"package {package} failed: {type(exc).__name__}: {exc}"
                ) from exc
            if not (isinstance(model, type) and issubclass(model, Section)):
                raise ImproperlyConfigured(
                    f"{entry.name}: the settings section {entry.value} of the package "
                    f"{package} is not an aiosite.Section"
                )
            found.append((f"the package {package}", entry.name, model))
    return found


def load_settings(project_dir: Path | str, env: str | None = None) -> Settings:
    """Read the project's settings for ``env`` (``AIOSITE_ENV`` by default), with the
    sections of the batteries and of every app listed in ``apps:``; raise
    ImproperlyConfigured naming the file and key of any error."""
    return read_settings(project_dir, env, sections=site_sections)


def create_site(settings: Settings) -> web.Application:
    """Build the site's application: its batteries, then its apps' setup hooks.

    Everything is attached here, before the application starts; aiohttp freezes it at
    startup, after which nothing adds routes, keys, hooks or middlewares.
    """
    # First: a public site without a secret key of its own stops here, before any battery
    # (the sessions' would otherwise make up a key and warn about it).
    refuse_public_site_without_secret_key(settings)
    registry = load_apps(settings)
    settings = _with_sections(settings, registry)
    app = web.Application(
        middlewares=registry.project.middlewares, client_max_size=settings.server.client_max_size
    )
    app[SETTINGS] = settings
    app[APPS] = registry
    app[PROBES] = Probes()
    for battery in BATTERIES:
        battery.setup(app, settings, registry)
    for loaded in registry:
        if loaded.config.setup is not None:
            loaded.config.setup(app, settings, registry)
    if registry.project.setup is not None:
        registry.project.setup(app, settings, registry)
    # The mode is chosen at startup, once whatever else sets the application up has
    # added its routes and middlewares too.
    app[core.CORE].install(app)
    return app


def _with_sections(settings: Settings, registry: AppRegistry) -> Settings:
    """``settings`` with every section the site's batteries and apps declare: as they
    are when aiosite.load_settings made them; made by hand (``Settings(apps=[...])``),
    the missing sections get their defaults."""
    known = type(settings).section_names
    if all(model in known for _, _, model in _declared_sections(registry)):
        return settings
    return revalidate(settings_class(site_sections(settings, registry=registry)), dict(settings))


def load_site(project_dir: Path | str, env: str | None = None) -> web.Application:
    """Read the project's settings for ``env`` and build its site."""
    return create_site(load_settings(project_dir, env))


__all__ = ["BATTERIES", "create_site", "load_settings", "load_site", "site_sections"]
