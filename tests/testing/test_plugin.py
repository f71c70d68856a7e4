"""The aiosite pytest plugin, run on tiny projects in a pytest subprocess."""

from __future__ import annotations

import sys
import textwrap

import pytest

pytest_plugins = ["pytester"]

ROUTES = """\
import asyncio
import time

from aiohttp import web

from aiosite import Routes

routes = Routes()


@routes.get("/", name="index")
async def index(request: web.Request) -> web.Response:
    return web.Response(text="home page")


@routes.get("/slow", name="slow")
async def slow(request: web.Request) -> web.Response:
    time.sleep(0.3)
    return web.Response(text="slow page")


@routes.get("/later", name="later")
async def later(request: web.Request) -> web.Response:
    # Blocks after the handler returned, with no frame of the project on the stack.
    asyncio.get_running_loop().call_soon(time.sleep, 0.3)
    return web.Response(text="later")
"""

INI = """\
[pytest]
asyncio_mode = {mode}
asyncio_default_fixture_loop_scope = function
addopts = --strict-markers -p no:cacheprovider
filterwarnings = error
"""

TESTS = """\
import asyncio

import pytest


async def test_home(client):
    resp = await client.get("/")
    assert resp.status == 200
    assert await resp.text() == "home page"


async def test_slow(client):
    resp = await client.get("/slow")
    assert resp.status == 200


@pytest.mark.allow_blocking
async def test_slow_allowed(client):
    resp = await client.get("/slow")
    assert resp.status == 200


async def test_slow_and_wrong(client):
    resp = await client.get("/slow")
    assert resp.status == 404, "its own failure"


async def test_block_outside_project_code(client):
    resp = await client.get("/later")
    assert resp.status == 200
    await asyncio.sleep(0.5)


def test_site_settings(site, site_settings):
    assert site_settings.env == "test"
    assert site_settings.debug.detect_blocking
"""


def write_project(pytester: pytest.Pytester, mode: str = "auto", tests: str = TESTS) -> None:
    pytester.makefile(".ini", pytest=INI.format(mode=mode))
    files = {
        "config/default.yaml": "site:\n  name: Plugin Site\n  package: mysite\napps:\n"
        "  - mysite.home\n",
        "config/test.yaml": "debug:\n  detect_blocking: true\n",
        "mysite/__init__.py": "",
        "mysite/home/__init__.py": 'from aiosite import App\n\napp = App("home", prefix="")\n',
        "mysite/home/routes.py": ROUTES,
        "tests/test_site.py": tests,
    }
    for name, text in files.items():
        path = pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def sleep_line() -> int:
    return next(n for n, line in enumerate(ROUTES.splitlines(), 1) if "time.sleep" in line)


def test_client_works_and_a_blocking_test_fails(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With CI set, pytest prints whole messages in the short summary too; the count below
    # is of the failure reports alone.
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("BUILD_NUMBER", raising=False)
    write_project(pytester)
    result = pytester.runpytest_subprocess("-v", "-rfP")
    result.assert_outcomes(passed=4, failed=2)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*test_slow *",
            "*aiosite: the event loop was blocked during this test:",
            f"*- * ms in route 'home:slow' at mysite/home/routes.py:{sleep_line()} in slow: "
            "time.sleep(0.3) (threshold 100 ms)",
            "*mark the test @pytest.mark.allow_blocking*",
        ]
    )
    # The block is reported once, for test_slow alone; a test that fails on its own
    # keeps its own failure.
    assert out.count("the event loop was blocked during this test") == 1
    assert "its own failure" in out
    # A block with no line of the project's code is logged, and does not fail a test.
    result.stdout.fnmatch_lines(["*::test_block_outside_project_code PASSED*"])
    result.stdout.fnmatch_lines(["*event loop blocked for * ms outside a request at *"])
    result.stdout.fnmatch_lines(["FAILED tests/test_site.py::test_slow - *"])
    result.stdout.fnmatch_lines(["FAILED tests/test_site.py::test_slow_and_wrong - *"])


def test_strict_asyncio_mode(pytester: pytest.Pytester) -> None:
    tests = textwrap.dedent("""\
        import pytest


        @pytest.mark.asyncio
        async def test_home(client):
            resp = await client.get("/")
            assert resp.status == 200


        @pytest.mark.asyncio
        async def test_slow(client):
            await client.get("/slow")
    """)
    write_project(pytester, mode="strict", tests=tests)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*in route 'home:slow' at mysite/home/routes.py:*"])


def test_plugin_is_inert_outside_an_aiosite_project(pytester: pytest.Pytester) -> None:
    pytester.makefile(".ini", pytest=INI.format(mode="auto"))
    pytester.makepyfile(
        test_plain="""
        def test_plain():
            assert 1 + 1 == 2


        async def test_async_plain():
            assert True


        def test_needs_site(site):
            pass
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*aiosite: no project found*--aiosite-project PATH*"])


def test_in_process_run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same checks in this process, where coverage sees the plugin's code run."""
    package = f"inproc_{pytester.path.name}".replace("-", "_")
    tests = TESTS.replace("mysite", package)
    write_project(pytester, tests=tests)
    (pytester.path / "mysite").rename(pytester.path / package)
    default = pytester.path / "config" / "default.yaml"
    default.write_text(default.read_text().replace("mysite", package))
    monkeypatch.syspath_prepend(str(pytester.path))
    try:
        result = pytester.runpytest_inprocess()
        result.assert_outcomes(passed=4, failed=2)
        result.stdout.fnmatch_lines([f"*- * ms in route 'home:slow' at {package}/home/routes.py:*"])
    finally:
        for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
            del sys.modules[name]
