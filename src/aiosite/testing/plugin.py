"""The aiosite pytest plugin (entry point ``pytest11``): ``site``, ``client`` and ``db``.

The project is the nearest directory at or above pytest's rootdir that holds
``config/default.yaml``, unless ``--aiosite-project`` or the ``aiosite_project`` ini
option names one. Settings load with the ``test`` environment.

The site under test never touches the project's development database: the first test
that needs ``site_settings`` (so ``site`` or ``client`` too) creates a test database for
the run, a fresh SQLite file or, on PostgreSQL, a schema ``test_<hex>`` of the configured
database dropped at the end, and migrates it once (Alembic when the project has
migrations, ``create_all`` otherwise). ``db`` empties every table before its test and
gives the test an ``AsyncSession`` on that database; what the test commits, requests
through ``client`` see. Nor does it call real upstreams: its outbound HTTP goes to
loopback only (``http.outbound``), where fakes listen (``aiosite.testing.fake_upstream``).

When the test settings turn on ``debug.detect_blocking``, a test during which the site
blocked the event loop in the project's code fails with the route and code line of each
block, unless it is marked ``@pytest.mark.allow_blocking``. In a project that is not an
aiosite project the plugin does nothing: its fixtures fail only when a test asks for them.
"""

from __future__ import annotations

import importlib.util
import weakref
from collections.abc import AsyncIterator, Generator, Iterable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncSession

from aiosite.db.config import DatabaseSettings
from aiosite.db.engine import Database
from aiosite.debug.blocking import BLOCK_DETECTOR, BlockDetector, BlockEvent
from aiosite.exceptions import AiositeError, ImproperlyConfigured
from aiosite.settings import Settings, find_project_dir
from aiosite.site import create_site, load_settings
from aiosite.testing import database as test_database
from aiosite.testing.upstreams import outbound_to_loopback

TEST_ENV = "test"
ALLOW_BLOCKING = "allow_blocking"

# How many of a detector's events have been reported, so that a site shared between
# tests (a wider-scoped fixture) blames each block on one test only.
_reported: weakref.WeakKeyDictionary[BlockDetector, int] = weakref.WeakKeyDictionary()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("aiosite")
    group.addoption(
        "--aiosite-project",
        default=None,
        help="the aiosite project directory (default: found from the rootdir)",
    )
    parser.addini("aiosite_project", "the aiosite project directory", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{ALLOW_BLOCKING}: do not fail the test when aiosite's block detector sees the "
        "event loop blocked",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    result = yield  # a failing test raises here and keeps its own failure
    # Only blocks with a line in the project's code fail a test: a block wholly inside
    # libraries (a slow first template compile on a loaded machine, say) is not the
    # test's doing and is only logged.
    blocks = [
        (detector, event)
        for detector in _detectors(item)
        for event in _unreported(detector)
        if event.where is not None
    ]
    if blocks and item.get_closest_marker(ALLOW_BLOCKING) is None:
        pytest.fail(_blocking_message(blocks), pytrace=False)
    return result


def _detectors(item: pytest.Item) -> Iterator[BlockDetector]:
    """The block detectors of the sites this test's fixtures built."""
    seen: set[int] = set()
    for value in getattr(item, "funcargs", {}).values():
        app = value.app if isinstance(value, TestClient) else value
        if isinstance(app, web.Application):
            detector = app.get(BLOCK_DETECTOR)
            if detector is not None and id(detector) not in seen:
                seen.add(id(detector))
                yield detector


def _unreported(detector: BlockDetector) -> list[BlockEvent]:
    events = detector.events_since(_reported.get(detector, 0))
    _reported[detector] = detector.total
    return events


def _blocking_message(blocks: Iterable[tuple[BlockDetector, BlockEvent]]) -> str:
    lines = ["aiosite: the event loop was blocked during this test:"]
    lines += [
        f"  - {event.summary} (threshold {detector.threshold_ms} ms)" for detector, event in blocks
    ]
    lines.append(
        "Move the blocking call off the loop (await asyncio.to_thread(...), or an async "
        f"client such as aiohttp's), or mark the test @pytest.mark.{ALLOW_BLOCKING}."
    )
    return "\n".join(lines)


@pytest.fixture(scope="session")
def aiosite_project_dir(pytestconfig: pytest.Config) -> Path:
    """The project under test."""
    named = pytestconfig.getoption("--aiosite-project") or pytestconfig.getini("aiosite_project")
    if named:
        return (pytestconfig.rootpath / str(named)).resolve()
    found = find_project_dir(pytestconfig.rootpath)
    if found is None:
        pytest.fail(
            "aiosite: no project found (no config/default.yaml at or above the rootdir); "
            "pass --aiosite-project PATH",
            pytrace=False,
        )
    return found


def _fail(message: str) -> NoReturn:
    """Fail the test with ``message`` alone: not the error it replaces, nor a traceback."""
    raise pytest.fail.Exception(message, pytrace=False) from None


def _load_settings(project_dir: Path) -> Settings:
    try:
        return load_settings(project_dir, TEST_ENV)
    except ImproperlyConfigured as exc:
        _fail(f"aiosite: {exc}")


@pytest.fixture(scope="session")
def aiosite_test_database(
    aiosite_project_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DatabaseSettings]:
    """The ``database`` settings of the run's own database, created on first use."""
    settings = _load_settings(aiosite_project_dir)
    try:
        settings = test_database.isolated(settings, tmp_path_factory.mktemp("aiosite-db"))
        test_database.prepare(settings)
    except AiositeError as exc:  # a settings or a migration error (CommandError)
        _fail(f"aiosite: test database: {exc}")
    yield settings.section(DatabaseSettings)
    test_database.destroy(settings)


@pytest.fixture
def site_settings(aiosite_project_dir: Path, aiosite_test_database: DatabaseSettings) -> Settings:
    """The project's settings for the ``test`` environment, on the test database, with
    outbound HTTP to loopback only (``http.outbound``, unless the settings set it)."""
    settings = _load_settings(aiosite_project_dir)
    where = {"url": aiosite_test_database.url, "schema_name": aiosite_test_database.schema_name}
    database = settings.section(DatabaseSettings).model_copy(update=where)
    # Nothing beyond loopback: an upstream a test forgot to fake fails at once.
    return outbound_to_loopback(settings.model_copy(update={"database": database}))


@pytest.fixture
def site(site_settings: Settings) -> web.Application:
    """The project's site, built fresh for each test."""
    try:
        return create_site(site_settings)
    except ImproperlyConfigured as exc:
        _fail(f"aiosite: {exc}")


async def _client(site: web.Application) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """An aiohttp test client on a server running ``site``."""
    client = TestClient(TestServer(site))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def _db(site_settings: Settings) -> AsyncIterator[AsyncSession]:
    """A session on the test database, whose tables are emptied first."""
    try:
        metadata = test_database.metadata_of(site_settings)
    except ImproperlyConfigured as exc:
        _fail(f"aiosite: {exc}")
    database = Database(site_settings)
    try:
        await test_database.empty_tables(database, metadata)
        async with database.session() as session:
            yield session
    finally:
        await database.dispose()


if importlib.util.find_spec("pytest_asyncio") is not None:
    import pytest_asyncio

    client = pytest_asyncio.fixture(_client, name="client")
    db = pytest_asyncio.fixture(_db, name="db")
else:  # pragma: no cover - installed with aiosite[test]

    def _needs_pytest_asyncio(name: str) -> None:
        pytest.fail(
            f"aiosite: the {name} fixture needs pytest-asyncio (pip install 'aiosite[test]')",
            pytrace=False,
        )

    @pytest.fixture(name="client")
    def _no_client() -> None:
        _needs_pytest_asyncio("client")

    @pytest.fixture(name="db")
    def _no_db() -> None:
        _needs_pytest_asyncio("db")
