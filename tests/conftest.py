"""Shared fixtures: small aiosite projects written into temporary directories."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from aiosite import load_site

ProjectFactory = Callable[..., Path]

DEFAULT_YAML = """\
site:
  name: Test Site
  package: {package}
apps:
{apps}
"""

HOME_INIT = 'from aiosite import App\n\napp = App("home", prefix="")\n'
HOME_TEMPLATE = "<p>{{ greeting }} from {{ site.name }}</p>"
HOME_ROUTES = """\
from aiohttp import web

from aiosite import Routes, json_response, template

routes = Routes()


@routes.get("/", name="index")
@template("home/index.html")
async def index(request: web.Request) -> dict[str, object]:
    return {"greeting": "<Hello>"}


@routes.get("/hello.json", name="hello")
async def hello(request: web.Request) -> web.Response:
    return json_response({"message": "Hello, World!"})
"""


@pytest.fixture
def make_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ProjectFactory]:
    """Write a project: ``make_project(files={"pkg/x.py": "..."}, apps=[...], yaml=...)``.

    Each project gets a unique package name so that imports never leak between tests.
    """
    counter = iter(range(10_000))
    created: list[str] = []

    def factory(
        files: dict[str, str] | None = None,
        *,
        apps: list[str] | None = None,
        default_yaml: str | None = None,
        env_yaml: dict[str, str] | None = None,
        with_home: bool = True,
    ) -> Path:
        package = f"proj_{tmp_path.name.replace('-', '_')}_{next(counter)}"
        root = tmp_path / package
        (root / "config").mkdir(parents=True)
        (root / package).mkdir()
        (root / package / "__init__.py").write_text("")
        app_list = [f"{package}.{a}" for a in (apps if apps is not None else ["home"])]
        if default_yaml is None:
            default_yaml = DEFAULT_YAML.format(
                package=package, apps="\n".join(f"  - {a}" for a in app_list) or "  []"
            )
            if not app_list:
                default_yaml = default_yaml.replace("apps:\n  []", "apps: []")
        (root / "config" / "default.yaml").write_text(default_yaml.replace("PKG", package))
        envs = {"development": "debug: true\n", "test": "{}\n", "production": "{}\n"}
        envs.update(env_yaml or {})
        for name, text in envs.items():
            (root / "config" / f"{name}.yaml").write_text(text.replace("PKG", package))
        all_files: dict[str, str] = {}
        if with_home:
            all_files.update(
                {
                    "PKG/home/__init__.py": HOME_INIT,
                    "PKG/home/routes.py": HOME_ROUTES,
                    "PKG/home/templates/home/index.html": HOME_TEMPLATE,
                    "PKG/home/static/home/site.css": "body { color: #123; }\n",
                }
            )
        all_files.update(files or {})
        for relative, text in all_files.items():
            path = root / relative.replace("PKG", package)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text).replace("PKG", package))
        created.append(package)
        return root

    yield factory
    for name in list(sys.modules):
        if any(name == p or name.startswith(p + ".") for p in created):
            del sys.modules[name]
    for entry in list(sys.path):
        if any(entry.endswith(p) for p in created):
            sys.path.remove(entry)


def site_client(root: Path, env: str = "test") -> TestClient[web.Request, web.Application]:
    """A test client on the project's site: ``async with site_client(root) as client:``."""
    return TestClient(TestServer(load_site(root, env)))
