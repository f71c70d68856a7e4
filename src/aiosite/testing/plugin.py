"""The aiosite pytest plugin (entry point ``pytest11``): ``site`` and ``client`` fixtures.

The project is the nearest directory at or above pytest's rootdir that holds
``config/default.yaml``, unless ``--aiosite-project`` or the ``aiosite_project`` ini
option names one. Settings load with the ``test`` environment.

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

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from aiosite.debug.blocking import BlockDetector, BlockEvent
from aiosite.exceptions import ImproperlyConfigured
from aiosite.keys import BLOCK_DETECTOR
from aiosite.settings import Settings, find_project_dir, load_settings
from aiosite.site import create_site

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


@pytest.fixture
def site_settings(aiosite_project_dir: Path) -> Settings:
    """The project's settings for the ``test`` environment."""
    try:
        return load_settings(aiosite_project_dir, TEST_ENV)
    except ImproperlyConfigured as exc:
        pytest.fail(f"aiosite: {exc}", pytrace=False)


@pytest.fixture
def site(site_settings: Settings) -> web.Application:
    """The project's site, built fresh for each test."""
    try:
        return create_site(site_settings)
    except ImproperlyConfigured as exc:
        pytest.fail(f"aiosite: {exc}", pytrace=False)


async def _client(site: web.Application) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """An aiohttp test client on a server running ``site``."""
    client = TestClient(TestServer(site))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


if importlib.util.find_spec("pytest_asyncio") is not None:
    import pytest_asyncio

    client = pytest_asyncio.fixture(_client, name="client")
else:  # pragma: no cover - installed with aiosite[test]

    @pytest.fixture(name="client")
    def _no_client() -> None:
        pytest.fail(
            "aiosite: the client fixture needs pytest-asyncio (pip install 'aiosite[test]')",
            pytrace=False,
        )
