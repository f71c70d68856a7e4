"""/metrics over HTTP: request counts by route, method and status, the duration
histogram, requests in flight, the gauges batteries report, access by address, and
prometheus-client's multiprocess mode (two sites of one process standing in for two
workers; tests/metrics/test_metrics_workers.py runs real gunicorn workers)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from aiosite.exceptions import ImproperlyConfigured
from aiosite.metrics import (
    multiprocess_root,
    prepare_multiprocess_dir,
    release_multiprocess_dir,
    worker_exited,
)
from tests.conftest import ProjectFactory, site_client

ROUTES = """\
import asyncio

from aiohttp import web

from aiosite import Routes, budget, database_of, open_websocket

routes = Routes()
# Set by the test's /release request: /slow and /hold-db wait for it.
released = asyncio.Event()


@routes.get("/hello", name="hello")
async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


@routes.get("/items/{id}")
async def item(request: web.Request) -> web.Response:
    return web.Response(text=request.match_info["id"])


@routes.get("/missing", name="missing")
async def missing(request: web.Request) -> web.Response:
    raise web.HTTPNotFound()


@routes.get("/broken", name="broken")
async def broken(request: web.Request) -> web.Response:
    raise RuntimeError("broken on purpose")


@routes.get("/slow", name="slow")
async def slow(request: web.Request) -> web.Response:
    await released.wait()
    return web.Response(text="done")


@routes.get("/hold-db", name="hold_db")
async def hold_db(request: web.Request) -> web.Response:
    async with database_of(request).engine.connect():
        await released.wait()
    return web.Response(text="done")


@routes.get("/busy", name="busy")
@budget(concurrency=1)
async def busy(request: web.Request) -> web.Response:
    await released.wait()
    return web.Response(text="done")


@routes.get("/release", name="release")
async def release(request: web.Request) -> web.Response:
    released.set()
    return web.Response(text="released")


@routes.websocket("/ws", name="ws")
async def ws(request: web.Request) -> web.WebSocketResponse:
    async with open_websocket(request) as socket:
        async for _ in socket:
            pass
    return socket
"""

JOBS_APP = """\
from aiosite import App, MetricSample, probes_of

done = {"count": 0}


def setup(app, settings, registry):
    done["count"] = 7
    probes_of(app).add_metrics_source(
        lambda: [MetricSample("myapp_jobs_total", "Jobs done.", "counter", done["count"],
                              {"queue": "mail"})]
    )


app = App("jobs", setup=setup)
"""


def project(make_project: ProjectFactory, yaml: str = "{}\n", *, jobs: bool = False) -> Path:
    """A project with the routes above; ``jobs``: with the app that reports a counter."""
    files = {"PKG/home/routes.py": ROUTES}
    if jobs:
        files["PKG/jobs/__init__.py"] = JOBS_APP
    return make_project(files, apps=["home", *(["jobs"] if jobs else [])], env_yaml={"test": yaml})


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def names(samples: Samples) -> Iterable[str]:
    return {name for name, _ in samples}


async def scrape(client: object) -> Samples:
    response = await client.get("/metrics")  # type: ignore[attr-defined]
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST
    return parse(await response.text())


async def test_requests_are_counted_by_route_method_and_status(
    make_project: ProjectFactory,
) -> None:
    async with site_client(project(make_project)) as client:
        for _ in range(3):
            assert (await client.get("/hello")).status == 200
        await client.head("/hello")
        await client.get("/items/1")
        await client.get("/items/2")
        assert (await client.get("/missing")).status == 404
        assert (await client.get("/broken")).status == 500
        for path in ("/nope", "/nope/2", "/x.php"):
            assert (await client.get(path)).status == 404
        assert (await client.post("/hello")).status == 405
        samples = await scrape(client)
    requests = "aiosite_requests_total"
    assert value(samples, requests, route="home:hello", method="GET", status="200") == 3
    assert value(samples, requests, route="home:hello", method="HEAD", status="200") == 1
    # A route without a name: its pattern, never the URL.
    assert value(samples, requests, route="/items/{id}", method="GET", status="200") == 2
    assert value(samples, requests, route="home:missing", method="GET", status="404") == 1
    assert value(samples, requests, route="home:broken", method="GET", status="500") == 1
    # Requests no route matched, through the core's fallback.
    assert value(samples, requests, route="<unmatched>", method="GET", status="404") == 3
    assert value(samples, requests, route="<unmatched>", method="POST", status="405") == 1
    assert not any("/nope" in str(labels) for _, labels in samples)


# Exceptions the site answers with other statuses than 500, through exception handlers.
ERRORS_APP = """\
from aiohttp import web

from aiosite import App, hooks_of


class Overloaded(Exception):
    pass


class Streamed(Exception):
    pass


class Throttled(Exception):
    pass


def overloaded_page(request, exc):
    return web.Response(status=503, text="overloaded", headers={"Retry-After": "1"})


async def streamed_page(request, exc):
    # Prepared by the exception handler itself: no response hook sees it.
    response = web.StreamResponse(status=503)
    await response.prepare(request)
    await response.write(b"streamed apology")
    return response


def payment_page(request, exc):
    raise web.HTTPFound("/hello")


def setup(app, settings, registry):
    hooks = hooks_of(app)
    hooks.add_exception_handler(Overloaded, overloaded_page)
    hooks.add_exception_handler(Streamed, streamed_page)
    # A handler for an HTTP exception class may answer with another status.
    hooks.add_exception_handler(web.HTTPPaymentRequired, payment_page)


app = App("errs", setup=setup)
"""

ERRORS_ROUTES = """\
import asyncio

from aiohttp import web

from aiosite import DatabaseUnavailable, Routes, budget

from PKG.errs import Overloaded, Streamed, Throttled

routes = Routes()


@routes.get("/overloaded", name="overloaded")
async def overloaded(request: web.Request) -> web.Response:
    raise Overloaded()


@routes.get("/db-down", name="db_down")
async def db_down(request: web.Request) -> web.Response:
    raise DatabaseUnavailable("the test's database is down")


@routes.get("/pay", name="pay")
async def pay(request: web.Request) -> web.Response:
    raise web.HTTPPaymentRequired()


@routes.get("/throttled", name="throttled")
async def throttled(request: web.Request) -> web.Response:
    raise Throttled()


@routes.get("/streamed", name="streamed")
async def streamed(request: web.Request) -> web.Response:
    raise Streamed()


@routes.get("/late", name="late")
@budget(timeout=0.05)
async def late(request: web.Request) -> web.Response:
    await asyncio.sleep(5)  # cancelled by its budget: 504
    return web.Response(text="too late")
"""

# Puts the core in its middleware mode; hands the handler a clone of the request (as a
# proxy-address middleware does) and answers Throttled itself.
MIDDLEWARE_SITE = """\
from aiohttp import web

from PKG.errs import Throttled


@web.middleware
async def throttle(request, handler):
    try:
        return await handler(request.clone())
    except Throttled:
        return web.Response(status=429, text="slow down")


middlewares = [throttle]
"""


def errors_project(make_project: ProjectFactory, mode: str, yaml: str = "{}\n") -> Path:
    files = {
        "PKG/home/routes.py": ROUTES,
        "PKG/errs/__init__.py": ERRORS_APP,
        "PKG/errs/routes.py": ERRORS_ROUTES,
    }
    if mode == "middleware":
        files["PKG/site.py"] = MIDDLEWARE_SITE
    return make_project(files, apps=["home", "errs"], env_yaml={"test": yaml})


@pytest.mark.parametrize("mode", ["endpoints", "middleware"])
async def test_a_raised_exception_counts_with_the_status_the_client_got(
    make_project: ProjectFactory, mode: str
) -> None:
    async with site_client(errors_project(make_project, mode)) as client:
        assert len(client.app.middlewares) == (2 if mode == "middleware" else 0)
        expected = {
            "errs:overloaded": ("/errs/overloaded", 503),  # the app's exception handler
            "errs:db_down": ("/errs/db-down", 503),  # the db battery's
            "errs:pay": ("/errs/pay", 302),  # an HTTP exception's handler redirects
            # The project's middleware answers it; without one it is unhandled.
            "errs:throttled": ("/errs/throttled", 429 if mode == "middleware" else 500),
            "home:broken": ("/broken", 500),  # unhandled
            "home:missing": ("/missing", 404),  # an HTTPException
            "home:hello": ("/hello", 200),
            "errs:late": ("/errs/late", 504),  # cancelled by a budget, not by its client
        }
        for path, status in expected.values():
            for _ in range(2):
                response = await client.get(path, allow_redirects=False)
                assert response.status == status, path
        samples = await scrape(client)
        # Each with the status its client got, and nothing else (nothing as a 500 it was
        # not, nothing twice).
        counted = request_counts(samples)
        assert counted == {
            (route, "GET", str(status)): 2 for route, (_, status) in expected.items()
        }
        for route in expected:
            assert value(samples, "aiosite_request_duration_seconds_count", route=route) == 2
        # Later scrapes add nothing: no request was left waiting for its status.
        for _ in range(2):
            assert request_counts(await scrape(client)) == counted


def request_counts(samples: Samples) -> dict[tuple[str, str, str], float]:
    """aiosite_requests_total by (route, method, status), without /metrics's own requests
    (each scrape counts the one before it)."""
    counts = {}
    for (name, pairs), count in samples.items():
        labels = dict(pairs)
        if name == "aiosite_requests_total" and labels["route"] != "aiosite:metrics":
            counts[labels["route"], labels["method"], labels["status"]] = count
    return counts


async def test_an_answer_no_response_hook_sees_still_counts(
    make_project: ProjectFactory,
) -> None:
    # The exception handler prepares its answer itself: the core runs no response hook
    # on it, so the request counts as the 500 the exception would be, once a fold has
    # passed since (it might have been still on its way to the hooks).
    yaml = "metrics:\n  flush_interval: 60\n"  # the scrapes alone fold
    async with site_client(errors_project(make_project, "endpoints", yaml)) as client:
        response = await client.get("/errs/streamed")
        assert response.status == 503
        assert await response.read() == b"streamed apology"
        await scrape(client)  # a first fold, which leaves it waiting for its answer
        streamed = {"route": "errs:streamed", "method": "GET", "status": "500"}
        for _ in range(3):
            samples = await scrape(client)
            assert value(samples, "aiosite_requests_total", **streamed) == 1
            assert (
                value(samples, "aiosite_request_duration_seconds_count", route="errs:streamed") == 1
            )


async def test_a_client_that_goes_away_counts_as_499(make_project: ProjectFactory) -> None:
    yaml = "metrics:\n  flush_interval: 0.05\n"
    async with site_client(errors_project(make_project, "endpoints", yaml)) as client:
        gone = asyncio.ensure_future(client.get("/slow"))
        for _ in range(200):
            if value(await scrape(client), "aiosite_requests_in_flight") == 2:
                break
            await asyncio.sleep(0.01)
        # The client gives up: the server cancels the handler, and no answer is sent.
        gone.cancel()
        await asyncio.gather(gone, return_exceptions=True)
        slow = {"route": "home:slow", "method": "GET"}
        for _ in range(200):
            samples = await scrape(client)
            if value(samples, "aiosite_requests_total", **slow, status="499") is not None:
                break
            await asyncio.sleep(0.01)
        assert value(samples, "aiosite_requests_total", **slow, status="499") == 1
        assert value(samples, "aiosite_requests_in_flight") == 1
        await asyncio.sleep(0.2)  # some folds more: counted once
        assert request_counts(await scrape(client)) == {("home:slow", "GET", "499"): 1}


async def test_durations_are_a_histogram_per_route(make_project: ProjectFactory) -> None:
    yaml = "metrics:\n  buckets: [0.5, 5.0]\n"
    async with site_client(project(make_project, yaml)) as client:
        for _ in range(4):
            await client.get("/hello")
        samples = await scrape(client)
    histogram = "aiosite_request_duration_seconds"
    assert value(samples, f"{histogram}_count", route="home:hello") == 4
    assert value(samples, f"{histogram}_bucket", route="home:hello", le="0.5") == 4
    assert value(samples, f"{histogram}_bucket", route="home:hello", le="5.0") == 4
    assert value(samples, f"{histogram}_bucket", route="home:hello", le="+Inf") == 4
    total = value(samples, f"{histogram}_sum", route="home:hello")
    assert total is not None
    assert 0 < total < 0.5


async def test_requests_in_flight_and_pool_gauges(make_project: ProjectFactory) -> None:
    async with site_client(project(make_project)) as client:
        samples = await scrape(client)
        # The scrape itself is in flight.
        assert value(samples, "aiosite_requests_in_flight") == 1
        assert value(samples, "aiosite_db_pool_size") == 5
        assert value(samples, "aiosite_db_pool_checked_out") == 0
        slow = asyncio.ensure_future(client.get("/slow"))
        holding = asyncio.ensure_future(client.get("/hold-db"))
        for _ in range(100):
            samples = await scrape(client)
            if value(samples, "aiosite_db_pool_checked_out") == 1:
                break
            await asyncio.sleep(0.01)
        assert value(samples, "aiosite_requests_in_flight") == 3
        assert value(samples, "aiosite_db_pool_checked_out") == 1
        await client.get("/release")
        assert (await slow).status == 200
        assert (await holding).status == 200
        samples = await scrape(client)
        assert value(samples, "aiosite_requests_in_flight") == 1
        assert value(samples, "aiosite_db_pool_checked_out") == 0


async def test_open_websockets_are_a_gauge(make_project: ProjectFactory) -> None:
    async with site_client(project(make_project)) as client:
        samples = await scrape(client)
        assert value(samples, "aiosite_websocket_connections") == 0
        assert value(samples, "aiosite_event_streams") == 0
        async with client.ws_connect("/ws"), client.ws_connect("/ws"):
            samples = await scrape(client)
            assert value(samples, "aiosite_websocket_connections") == 2
        for _ in range(100):
            samples = await scrape(client)
            if value(samples, "aiosite_websocket_connections") == 0:
                break
            await asyncio.sleep(0.01)
        assert value(samples, "aiosite_websocket_connections") == 0
        # Counted once its handler is done (101, as aiohttp logs it).
        assert (
            value(samples, "aiosite_requests_total", route="home:ws", method="GET", status="101")
            == 2
        )


async def test_an_app_reports_a_counter(make_project: ProjectFactory) -> None:
    async with site_client(project(make_project, jobs=True)) as client:
        samples = await scrape(client)
    assert value(samples, "myapp_jobs_total", queue="mail") == 7


async def test_metrics_are_only_for_the_allowed_networks(make_project: ProjectFactory) -> None:
    yaml = "metrics:\n  allow: [10.0.0.0/8]\n"
    async with site_client(project(make_project, yaml)) as client:
        response = await client.get("/metrics")
        assert response.status == 403
        assert "metrics.allow" in await response.text()
        # A header any client can send counts for nothing while proxies are not trusted.
        response = await client.get("/metrics", headers={"X-Forwarded-For": "10.1.2.3"})
        assert response.status == 403
    trusted = yaml + "security:\n  trust_proxy_headers: true\n"
    async with site_client(project(make_project, trusted)) as client:
        response = await client.get("/metrics", headers={"X-Forwarded-For": "10.1.2.3"})
        assert response.status == 200
        assert (await client.get("/metrics")).status == 403


async def test_metrics_answer_any_host_from_an_allowed_address(
    make_project: ProjectFactory,
) -> None:
    # Prometheus names its target by address in the Host header.
    async with site_client(project(make_project)) as client:
        response = await client.get("/metrics", headers={"Host": "10.9.8.7:8000"})
        assert response.status == 200
        assert (await client.get("/hello", headers={"Host": "10.9.8.7:8000"})).status == 400


async def test_two_sites_in_one_process_count_apart(make_project: ProjectFactory) -> None:
    async with (
        site_client(project(make_project)) as first,
        site_client(project(make_project)) as second,
    ):
        for _ in range(3):
            await first.get("/hello")
        await second.get("/hello")
        ones = await scrape(first)
        twos = await scrape(second)
    hello = {"route": "home:hello", "method": "GET", "status": "200"}
    assert value(ones, "aiosite_requests_total", **hello) == 3
    assert value(twos, "aiosite_requests_total", **hello) == 1


async def test_multiprocess_mode_sums_the_files_of_every_process(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    directory = tmp_path / "prometheus"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    yaml = "metrics:\n  flush_interval: 0.05\n"
    hello = {"route": "home:hello", "method": "GET", "status": "200"}
    # Two sites write files of their own, as two workers do; a scrape of either reads all.
    async with (
        site_client(project(make_project, yaml, jobs=True)) as first,
        site_client(project(make_project, yaml)) as second,
    ):
        for _ in range(3):
            await first.get("/hello")
        for _ in range(2):
            await second.get("/hello")
        await second.get("/nope")
        # The second site's counts reach its files within a flush interval.
        for _ in range(100):
            samples = await scrape(first)
            if value(samples, "aiosite_requests_total", **hello) == 5:
                break
            await asyncio.sleep(0.02)
        assert value(samples, "aiosite_requests_total", **hello) == 5
        assert (
            value(
                samples, "aiosite_requests_total", route="<unmatched>", method="GET", status="404"
            )
            == 1
        )
        assert value(samples, "aiosite_request_duration_seconds_count", route="home:hello") == 5
        assert value(samples, "aiosite_db_pool_size") == 10  # 5 + 5, summed over live ones
        assert value(samples, "myapp_jobs_total", queue="mail") == 7
        files = sorted(path.name for path in directory.iterdir())
        pid = os.getpid()
        assert all(name.split("_")[-1].startswith(f"{pid}-aiosite-") for name in files)
        assert {name.split("_")[0] for name in files} == {"counter", "gauge", "histogram"}
    # A worker that exited: its gauges leave the sums, its counters stay.
    worker_exited(pid)
    left = sorted(path.name for path in directory.iterdir())
    assert left
    assert not any(name.startswith("gauge_") for name in left)


def test_each_server_has_a_directory_and_removes_only_those_of_ended_ones(
    make_project: ProjectFactory,
) -> None:
    from aiosite import load_settings

    root = multiprocess_root(load_settings(project(make_project), "test"))
    assert root.parts[-2:] == ("var", "prometheus")
    root.mkdir(parents=True)
    # A server still running (this test's parent process), one whose master has ended,
    # one whose pid now belongs to a process started at another time, and this
    # process's own from an earlier server that had its pid.
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    running, reused, mine = root / str(os.getppid()), root / "1", root / str(os.getpid())
    # A start time no process has (the real ones are clock ticks since boot).
    for directory, token in ((running, None), (reused, "-1"), (mine, None)):
        directory.mkdir()
        (directory / "counter_7-aiosite-x.db").write_bytes(b"counts")
        if token is not None:
            (directory / "master").write_text(token)
    gone = root / str(ended.pid)
    gone.mkdir()
    (root / "counter_123.db").write_bytes(b"an older layout's")
    (root / "notes.txt").write_text("kept")
    path = prepare_multiprocess_dir(root)
    assert path == mine
    assert list(path.iterdir()) == [path / "master"]  # emptied: a new server's
    assert (running / "counter_7-aiosite-x.db").exists()
    assert not gone.exists()
    assert not reused.exists()
    assert sorted(p.name for p in root.iterdir() if not p.is_dir()) == ["notes.txt"]
    release_multiprocess_dir(path)
    assert not path.exists()
    assert running.exists()


@pytest.mark.parametrize(
    ("yaml", "problem"),
    [
        ("metrics:\n  buckets: [1.0, 0.5]\n", "metrics.buckets"),
        ("metrics:\n  allow: [not-a-network]\n", "metrics.allow"),
        ("metrics:\n  path: metrics\n", "metrics.path"),
    ],
)
def test_bad_metrics_settings_name_the_key(
    make_project: ProjectFactory, yaml: str, problem: str
) -> None:
    from aiosite import load_settings

    with pytest.raises(ImproperlyConfigured, match=problem.replace(".", r"\.")):
        load_settings(project(make_project, yaml), "test")


async def test_the_path_comes_from_the_settings(make_project: ProjectFactory) -> None:
    async with site_client(project(make_project, "metrics:\n  path: /stats\n")) as client:
        assert (await client.get("/stats")).status == 200
        assert (await client.get("/metrics")).status == 404


async def test_metrics_disabled_serve_nothing(make_project: ProjectFactory) -> None:
    async with site_client(project(make_project, "metrics:\n  enabled: false\n")) as client:
        assert (await client.get("/hello")).status == 200
        assert (await client.get("/metrics")).status == 404


async def test_what_a_budget_refuses_is_counted(make_project: ProjectFactory) -> None:
    # The metrics wrap the budgets: a 503 for concurrency never reaches the handler, and
    # a 504 cuts it short; both are answers the client got.
    async with site_client(errors_project(make_project, "endpoints")) as client:
        assert wrappers_of(client, "home:busy")[:2] == ["aiosite.metrics", "aiosite.budgets"]
        held = asyncio.ensure_future(client.get("/busy"))
        for _ in range(200):
            if value(await scrape(client), "aiosite_requests_in_flight") == 2:
                break
            await asyncio.sleep(0.01)
        refused = await client.get("/busy")
        assert refused.status == 503
        assert (await client.get("/errs/late")).status == 504
        await client.get("/release")
        assert (await held).status == 200
        counted = request_counts(await scrape(client))
    assert counted[("home:busy", "GET", "503")] == 1
    assert counted[("home:busy", "GET", "200")] == 1
    assert counted[("errs:late", "GET", "504")] == 1


def wrappers_of(client: object, name: str) -> list[str]:
    from aiosite.web.core import CORE

    app = client.app  # type: ignore[attr-defined]
    route = next(iter(app.router[name]))
    names: list[str] = app[CORE].hook_names(app, route)["wrapper"]
    return names


async def test_a_websocket_is_counted_but_its_life_is_not_timed(
    make_project: ProjectFactory,
) -> None:
    async with site_client(project(make_project)) as client:
        async with client.ws_connect("/ws"):
            await asyncio.sleep(1.5)
        ws = {"route": "home:ws", "method": "GET", "status": "101"}
        for _ in range(100):
            samples = await scrape(client)
            if value(samples, "aiosite_requests_total", **ws) == 1:
                break
            await asyncio.sleep(0.01)
        assert value(samples, "aiosite_requests_total", **ws) == 1
        histogram = "aiosite_request_duration_seconds"
        assert not value(samples, f"{histogram}_count", route="home:ws")
        assert not value(samples, f"{histogram}_sum", route="home:ws")
        # Every bucket, +Inf included, is free of it: no route has an observation of 1.5 s.
        assert all(
            count == value(samples, f"{histogram}_bucket", **{**dict(labels), "le": "1.0"})
            for (name, labels), count in samples.items()
            if name == f"{histogram}_bucket" and dict(labels)["le"] == "+Inf"
        )
