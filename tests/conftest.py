"""Shared fixtures: small aiosite projects written into temporary directories."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from aiosite import database_of, load_site
from aiosite.apps import APPS
from aiosite.db.config import DatabaseSettings
from aiosite.db.engine import Database
from aiosite.db.models import Model, site_metadata
from aiosite.settings import settings_class

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
        # Production refuses to start without a secret key of its own; development warns
        # (and starts) without one, as `aiosite new` writes one.
        keys = {
            "development": f"security:\n  secret_key: aiosite-insecure-{uuid.uuid4().hex}\n",
            "production": f"security:\n  secret_key: {uuid.uuid4().hex}{uuid.uuid4().hex}\n",
        }
        envs = {"development": "debug: true\n", "test": "{}\n", "production": "{}\n"}
        envs.update(env_yaml or {})
        for name, key in keys.items():
            explicitly_empty = envs[name].strip() == "{}" and name in (env_yaml or {})
            if "security" not in envs[name] and not explicitly_empty:
                envs[name] = key + ("" if envs[name].strip() == "{}" else envs[name])
        # Production serves static files from what `aiosite collectstatic` wrote (its
        # manifest); a test project has not run it, so it serves the static folders,
        # unless the test sets the static: section itself.
        if "\nstatic:" not in "\n" + envs["production"]:
            production = envs["production"]
            envs["production"] = "static:\n  manifest: false\n" + (
                "" if production.strip() == "{}" else production
            )
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
    _forget_models(created)
    for name in list(sys.modules):
        if any(name == p or name.startswith(p + ".") for p in created):
            del sys.modules[name]
    for entry in list(sys.path):
        if any(entry.endswith(p) for p in created):
            sys.path.remove(entry)


def _forget_models(packages: list[str]) -> None:
    # Every project's models share aiosite's one declarative registry and MetaData; a
    # project's tables and mappers must not outlive its test (a later project may reuse
    # a table name, and a broken mapper would fail every later mapper configuration).
    owned = [
        mapper
        for mapper in Model.registry.mappers
        if any(mapper.class_.__module__.startswith(p + ".") for p in packages)
    ]
    if owned:
        Model.registry.dispose()
        Model.metadata.clear()


def site_client(root: Path, env: str = "test") -> TestClient[web.Request, web.Application]:
    """A test client on the project's site: ``async with site_client(root) as client:``."""
    return TestClient(TestServer(load_site(root, env)))


@contextlib.asynccontextmanager
async def site_with_tables(
    root: Path, env: str = "test"
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """A started client on the project's site, with the tables of its models created."""
    async with site_client(root, env) as client:
        async with database_of(client.app).engine.begin() as connection:
            await connection.run_sync(site_metadata(client.app[APPS]).create_all)
        yield client


# --- databases ---------------------------------------------------------------------

BACKENDS = ("sqlite", "postgresql")
POSTGRESQL_URL = os.environ.get(
    "AIOSITE_TEST_POSTGRESQL_URL", "postgresql+asyncpg://root@127.0.0.1:5432/test"
)
REDIS_ADDRESS = ("127.0.0.1", 6379)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db",
        default=",".join(BACKENDS),
        help="database backends for the data-layer tests, comma-separated "
        "(default: sqlite,postgresql)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "db_backends(*names): run the test on these database backends only"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_backend" in metafunc.fixturenames:
        chosen = [b.strip() for b in str(metafunc.config.getoption("--db")).split(",")]
        unknown = set(chosen) - set(BACKENDS)
        if unknown:
            raise pytest.UsageError(f"--db: unknown backend(s) {sorted(unknown)}; use {BACKENDS}")
        marker = metafunc.definition.get_closest_marker("db_backends")
        if marker is not None:
            chosen = [b for b in chosen if b in marker.args]
        metafunc.parametrize("db_backend", chosen)


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or fail, when AIOSITE_REQUIRE_SERVICES=1) unless a service answers."""
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        message = f"{name} is not running on {host}:{port} ({exc.strerror or exc})"
        if os.environ.get("AIOSITE_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{message}; AIOSITE_REQUIRE_SERVICES=1 requires it", pytrace=False)
        pytest.skip(message)


@dataclass(frozen=True)
class TestDatabase:
    """A database of the test's own: a SQLite file, or a PostgreSQL schema."""

    __test__ = False  # not a test class, whatever its name

    backend: str
    url: str
    schema_name: str | None

    @property
    def environ(self) -> dict[str, str]:
        """What selects this database for a site, in-process or in a subprocess."""
        env = {"AIOSITE_DATABASE__URL": self.url}
        if self.schema_name:
            env["AIOSITE_DATABASE__SCHEMA_NAME"] = self.schema_name
        return env

    def open(self) -> Database:
        """A Database on it (for setting up and checking rows around requests)."""
        # model_construct: no environment layer, whatever the test has set.
        settings = settings_class({"database": DatabaseSettings}).model_construct(
            database=DatabaseSettings(url=self.url, schema_name=self.schema_name)
        )
        return Database(settings)


@pytest.fixture
def database(
    db_backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestDatabase]:
    """A fresh, empty database on ``db_backend``, selected through the environment."""
    if db_backend == "sqlite":
        target = TestDatabase("sqlite", f"sqlite+aiosqlite:///{tmp_path}/test.sqlite3", None)
    else:
        require_service("PostgreSQL", "127.0.0.1", 5432)
        schema = f"aiosite_test_{uuid.uuid4().hex[:12]}"
        target = TestDatabase("postgresql", POSTGRESQL_URL, schema)
        asyncio.run(_with_database(target, "create_schema"))
    for name, value in target.environ.items():
        monkeypatch.setenv(name, value)
    yield target
    if target.schema_name:
        asyncio.run(_with_database(target, "drop_schema"))


async def _with_database(target: TestDatabase, method: str) -> None:
    database = target.open()
    try:
        await getattr(database, method)()
    finally:
        await database.dispose()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The browser tests need pytest-playwright, which only a run of their own turns on
    # (`-p playwright`, as `make pytest` does): see the Makefile.
    if config.pluginmanager.hasplugin("playwright"):
        return
    skip = pytest.mark.skip(
        reason="browser test: run it with `pytest -p playwright tests/e2e/test_browser_chat.py`"
        " (make test does, beside the rest)"
    )
    for item in items:
        if item.path.name == "test_browser_chat.py":
            item.add_marker(skip)
