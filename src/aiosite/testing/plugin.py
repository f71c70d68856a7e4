"""The aiosite pytest plugin (entry point ``pytest11``): ``site`` and ``client`` fixtures.

The project is the nearest directory at or above pytest's rootdir that holds
``config/default.yaml``, unless ``--aiosite-project`` or the ``aiosite_project`` ini
option names one. Settings load with the ``test`` environment.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from aiosite.settings import Settings, find_project_dir, load_settings
from aiosite.site import create_site

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - installed with aiosite[test]
    pytest_asyncio = None  # type: ignore[assignment]

TEST_ENV = "test"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("aiosite")
    group.addoption("--aiosite-project", default=None,
                    help="the aiosite project directory (default: found from the rootdir)")
    parser.addini("aiosite_project", "the aiosite project directory", default="")


@pytest.fixture(scope="session")
def aiosite_project_dir(pytestconfig: pytest.Config) -> Path:
    """The project under test."""
    named = pytestconfig.getoption("--aiosite-project") or pytestconfig.getini("aiosite_project")
    if named:
        return (pytestconfig.rootpath / str(named)).resolve()
    found = find_project_dir(pytestconfig.rootpath)
    if found is None:
        pytest.fail("aiosite: no project found (no config/default.yaml at or above the rootdir); "
                    "pass --aiosite-project PATH", pytrace=False)
    return found


@pytest.fixture
def site_settings(aiosite_project_dir: Path) -> Settings:
    """The project's settings for the ``test`` environment."""
    return load_settings(aiosite_project_dir, TEST_ENV)


@pytest.fixture
def site(site_settings: Settings) -> web.Application:
    """The project's site, built fresh for each test."""
    return create_site(site_settings)


async def _client(site: web.Application) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    client = TestClient(TestServer(site))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


if pytest_asyncio is not None:
    client = pytest_asyncio.fixture(_client, name="client")
