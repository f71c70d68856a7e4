"""A one-app project on disk, for the tests that run it with `aiosite serve`."""

from __future__ import annotations

from pathlib import Path


def write_served_project(
    root: Path, package: str, routes: str, *, production_yaml: str = "{}\n"
) -> Path:
    """``root`` holding the project ``package`` whose one app, ``home``, mounts
    ``routes`` (the source of its routes.py) at the root of the site."""
    (root / "config").mkdir(parents=True)
    (root / "config" / "default.yaml").write_text(
        f"site:\n  name: {package}\n  package: {package}\napps:\n  - {package}.home\n"
    )
    (root / "config" / "production.yaml").write_text(production_yaml)
    (root / package / "home").mkdir(parents=True)
    (root / package / "__init__.py").write_text("")
    (root / package / "home" / "__init__.py").write_text(
        'from aiosite import App\n\napp = App("home", prefix="")\n'
    )
    (root / package / "home" / "routes.py").write_text(routes)
    return root
