"""Per-route budgets through HTTP: 504 past a timeout (the handler cancelled), 503 with
Retry-After beyond a concurrency (the slot given back when a request ends, however it
ends), 413 past a body size; the site's defaults, overridden per route; websockets and
event streams open past a timeout; trips counted and logged; no wrapper where no budget."""

from __future__ import annotations

import asyncio
import importlib
import logging
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient

from aiosite import ImproperlyConfigured, budget
from aiosite.probes import probes_of
from aiosite.web.core import CORE
from tests.conftest import ProjectFactory, site_client

Client = TestClient[web.Request, web.Application]

ROUTES = """\
import asyncio

from aiohttp import web

from aiosite import Routes, budget, csrf_exempt, open_event_stream, open_websocket

routes = Routes()


class State:
    cancelled = 0  # handlers of /slow that were cancelled
    entered = 0  # requests that reached a held handler
    arrived = asyncio.Event()  # set when one does
    release = asyncio.Event()


async def hold() -> web.Response:
    State.entered += 1
    State.arrived.set()
    await State.release.wait()
    return web.Response(text="done")


@routes.get("/plain", name="plain")
async def plain(request: web.Request) -> web.Response:
    return web.Response(text="plain")


@routes.get("/slow", name="slow")
@budget(timeout=0.2)
async def slow(request: web.Request) -> web.Response:
    try:
        await asyncio.Event().wait()  # never set
    finally:
        State.cancelled += 1
    return web.Response(text="never")


@routes.get("/held", name="held")
@budget(concurrency=2)
async def held(request: web.Request) -> web.Response:
    return await hold()


@routes.post("/upload", name="upload")
@csrf_exempt
@budget(max_body_size=10)
async def upload(request: web.Request) -> web.Response:
    return web.Response(text=str(len(await request.read())))


@routes.view("/things", name="things")
@csrf_exempt
@budget(concurrency=1)
class Things(web.View):
    @budget(timeout=0.2)
    async def get(self) -> web.Response:
        State.entered += 1
        State.arrived.set()
        await asyncio.Event().wait()
        return web.Response(text="never")

    async def post(self) -> web.Response:
        return await hold()


@routes.get("/patient", name="patient")
@budget(timeout=None)
async def patient(request: web.Request) -> web.Response:
    await asyncio.sleep(0.4)  # longer than the site's default timeout
    return web.Response(text="patient")


@routes.get("/capped", name="capped")
@budget(concurrency=5)
async def capped(request: web.Request) -> web.Response:
    await asyncio.Event().wait()
    return web.Response(text="never")


@routes.websocket("/ws", name="ws")
async def ws(request: web.Request) -> web.WebSocketResponse:
    async with open_websocket(request) as socket:
        async for message in socket:
            await socket.send_str(f"echo {message.data}")
    return socket


@routes.websocket("/ws-budget", name="ws_budget")
@budget(timeout=0.2)
async def ws_budget(request: web.Request) -> web.WebSocketResponse:
    async with open_websocket(request) as socket:
        async for message in socket:
            await socket.send_str(f"echo {message.data}")
    return socket


@routes.get("/events", name="events")
@budget(timeout=0.2)
async def events(request: web.Request) -> web.StreamResponse:
    async with open_event_stream(request) as stream:
        await asyncio.sleep(0.4)  # past the timeout, once the stream is open
        await stream.send("late")
    return stream
"""

SITE_DEFAULTS = "budgets:\n  timeout: 0.2\n  concurrency: 3\n  retry_after: 7\n"


def budget_project(make_project: ProjectFactory, test_yaml: str = "{}\n") -> Path:
    return make_project({"PKG/home/routes.py": ROUTES}, env_yaml={"test": test_yaml})


def routes_of(root: Path) -> Any:
    module: ModuleType = importlib.import_module(f"{root.name}.home.routes")
    return module.State


def trips(client: Client) -> dict[tuple[str, str], float]:
    return {
        (sample.labels["route"], sample.labels["kind"]): sample.value
        for source in probes_of(client.app).metrics_sources
        for sample in source()
        if sample.name == "aiosite_budget_trips_total"
    }


def wrappers(client: Client, name: str) -> list[str]:
    app = client.app
    route = next(iter(app.router[name]))
    return app[CORE].hook_names(app, route)["wrapper"]


async def entered(state: Any, count: int) -> None:
    """Wait until ``count`` requests in all have reached a held handler."""
    async with asyncio.timeout(3):
        while state.entered < count:
            state.arrived.clear()
            await state.arrived.wait()


async def test_past_its_timeout_a_request_gets_504_and_its_handler_is_cancelled(
    make_project: ProjectFactory, caplog: pytest.LogCaptureFixture
) -> None:
    root = budget_project(make_project)
    async with site_client(root) as client:
        state = routes_of(root)
        with caplog.at_level(logging.WARNING, logger="aiosite.budgets"):
            response = await client.get("/slow")
        assert response.status == 504
        assert response.content_type == "text/html"
        page = await response.text()
        assert "<h1>504</h1>" in page
        assert "This page took too long: it has 0.2 seconds to answer." in page
        assert state.cancelled == 1
        assert trips(client)[("home:slow", "timeout")] == 1
        warnings = [r.getMessage() for r in caplog.records if r.name == "aiosite.budgets"]
        assert warnings == ["Budget of home:slow tripped: timeout of 0.2 s passed (answered 504)"]

        # JSON clients get the JSON error body; the trip is counted, not logged again
        # within the minute.
        caplog.clear()
        response = await client.get("/slow", headers={"Accept": "application/json"})
        assert response.status == 504
        body = await response.json()
        assert body["error"]["status"] == 504
        assert body["error"]["message"].startswith("This page took too long")
        assert trips(client)[("home:slow", "timeout")] == 2
        assert not [r for r in caplog.records if r.name == "aiosite.budgets"]


async def test_beyond_its_concurrency_a_request_gets_503_at_once_until_a_slot_frees(
    make_project: ProjectFactory, caplog: pytest.LogCaptureFixture
) -> None:
    root = budget_project(make_project)
    async with site_client(root) as client:
        state = routes_of(root)
        running = [asyncio.create_task(client.get("/held")) for _ in range(2)]
        await entered(state, 2)
        with caplog.at_level(logging.WARNING, logger="aiosite.budgets"):
            refused = await client.get("/held")
        assert refused.status == 503
        assert refused.headers["Retry-After"] == "1"
        assert "This page is busy: it serves 2 requests at a time." in await refused.text()
        assert state.entered == 2  # refused before the handler ran
        assert trips(client)[("home:held", "concurrency")] == 1
        assert "Budget of home:held tripped: concurrency limit of 2 reached" in caplog.text
        # Other routes are not held up.
        assert (await client.get("/plain")).status == 200

        state.release.set()
        for task in running:
            response = await task
            assert (response.status, await response.text()) == (200, "done")
        # The slots are free again.
        again = await asyncio.gather(client.get("/held"), client.get("/held"))
        assert [r.status for r in again] == [200, 200]


async def test_a_client_that_goes_mid_request_gives_its_slot_back(
    make_project: ProjectFactory,
) -> None:
    root = budget_project(make_project)
    async with site_client(root) as client:
        state = routes_of(root)
        running = [asyncio.create_task(client.get("/held")) for _ in range(2)]
        await entered(state, 2)
        assert (await client.get("/held")).status == 503
        # The clients give up: their connections close and the server cancels their
        # handlers (aiohttp's handler_cancellation).
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        # Both slots come back: two new requests enter the handler.
        waiting = [asyncio.create_task(client.get("/held")) for _ in range(2)]
        await entered(state, 4)
        state.release.set()
        assert [(await task).status for task in waiting] == [200, 200]


async def test_a_body_larger_than_max_body_size_gets_413_before_it_is_read(
    make_project: ProjectFactory,
) -> None:
    async with site_client(budget_project(make_project)) as client:
        fits = await client.post("/upload", data=b"x" * 10)
        assert (fits.status, await fits.text()) == (200, "10")
        refused = await client.post("/upload", data=b"x" * 11)
        assert refused.status == 413
        assert "accepts at most 10 bytes, and the request declares 11" in await refused.text()


async def test_a_budget_on_a_view_class_and_on_its_method(make_project: ProjectFactory) -> None:
    root = budget_project(make_project)
    async with site_client(root) as client:
        state = routes_of(root)
        # The method's timeout, with the class's concurrency.
        getting = asyncio.create_task(client.get("/things"))
        await entered(state, 1)
        assert (await client.get("/things")).status == 503
        assert (await getting).status == 504
        # The class's concurrency on a method without a budget of its own (counted
        # apart from GET, which has a budget of its own).
        posting = asyncio.create_task(client.post("/things"))
        await entered(state, 2)
        refused = await client.post("/things")
        assert refused.status == 503
        state.release.set()
        assert (await posting).status == 200
        assert trips(client)[("home:things", "concurrency")] == 2
        assert trips(client)[("home:things", "timeout")] == 1


async def test_routes_without_a_budget_run_no_budget_wrapper(
    make_project: ProjectFactory,
) -> None:
    async with site_client(budget_project(make_project)) as client:
        assert "aiosite.budgets" not in wrappers(client, "home:plain")
        assert "aiosite.budgets" not in wrappers(client, "home:ws")
        # budget(timeout=None) alone, without site defaults: nothing to enforce.
        assert "aiosite.budgets" not in wrappers(client, "home:patient")
        for name in ("home:slow", "home:held", "home:things", "home:events", "home:ws_budget"):
            assert "aiosite.budgets" in wrappers(client, name), name
        # Only budgets with a timeout or a concurrency are reported.
        assert ("home:plain", "timeout") not in trips(client)
        assert trips(client)[("home:held", "concurrency")] == 0


async def test_site_defaults_apply_to_every_route_and_a_route_overrides_them(
    make_project: ProjectFactory,
) -> None:
    async with site_client(budget_project(make_project, SITE_DEFAULTS)) as client:
        assert "aiosite.budgets" in wrappers(client, "home:plain")
        assert (await client.get("/plain")).status == 200
        # budget(timeout=None) turns the site's timeout off for its route.
        patient = await client.get("/patient")
        assert (patient.status, await patient.text()) == (200, "patient")
        # budget(concurrency=5) keeps the site's timeout.
        assert (await client.get("/capped")).status == 504
        assert trips(client)[("home:capped", "timeout")] == 1


async def test_site_default_concurrency_answers_with_its_retry_after(
    make_project: ProjectFactory,
) -> None:
    defaults = "budgets:\n  concurrency: 1\n  retry_after: 7\n"
    root = budget_project(make_project, defaults)
    async with site_client(root) as client:
        state = routes_of(root)
        running = asyncio.create_task(client.post("/things"))  # the class's own: 1
        await entered(state, 1)
        refused = await client.post("/things")
        assert (refused.status, refused.headers["Retry-After"]) == (503, "7")
        state.release.set()
        assert (await running).status == 200


async def test_a_websocket_stays_open_past_the_site_timeout_and_its_own(
    make_project: ProjectFactory,
) -> None:
    async with site_client(budget_project(make_project, SITE_DEFAULTS)) as client:
        # The site's defaults leave websocket routes alone.
        assert "aiosite.budgets" not in wrappers(client, "home:ws")
        for path in ("/ws", "/ws-budget"):
            async with client.ws_connect(path) as socket:
                await asyncio.sleep(0.4)  # past the 0.2 s timeouts
                await socket.send_str("hi")
                async with asyncio.timeout(3):
                    message = await socket.receive()
                assert (message.type, message.data) == (WSMsgType.TEXT, "echo hi"), path
        assert trips(client).get(("home:ws_budget", "timeout"), 0) == 0


async def test_an_event_stream_runs_past_its_timeout_once_open(
    make_project: ProjectFactory,
) -> None:
    async with site_client(budget_project(make_project)) as client:
        response = await client.get("/events", timeout=aiohttp.ClientTimeout(total=5))
        assert response.status == 200
        assert "data: late" in await response.text()
        assert trips(client)[("home:events", "timeout")] == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"timeout": 0}, "budget(timeout=0): the timeout is a positive number of seconds"),
        ({"timeout": -1.5}, "budget(timeout=-1.5)"),
        ({"timeout": float("inf")}, "budget(timeout=inf)"),
        ({"timeout": True}, "budget(timeout=True)"),
        ({"timeout": "5"}, "budget(timeout='5')"),
        ({"concurrency": 0}, "budget(concurrency=0): concurrency is a whole number"),
        ({"concurrency": 2.5}, "budget(concurrency=2.5)"),
        ({"max_body_size": 0}, "budget(max_body_size=0): max_body_size is a whole number"),
    ],
)
def test_bad_arguments_are_refused_when_the_module_is_imported(
    arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        budget(**arguments)


def test_a_bad_budgets_section_names_the_key(make_project: ProjectFactory) -> None:
    root = budget_project(make_project, "budgets:\n  timeout: -1\n")
    with pytest.raises(ImproperlyConfigured, match=r"config/test\.yaml: budgets\.timeout: "):
        site_client(root)


# Probes and static files under tight site-wide defaults; a probe of the app's own with a
# budget of its own.
PROBES_APP = """\
import asyncio

from aiohttp import web

from aiosite import App, budget, probes_of
from aiosite.keys import PROBE


async def takes_a_while() -> None:
    await asyncio.sleep(0.2)


@budget(timeout=0.05)
async def own_probe(request: web.Request) -> web.Response:
    await asyncio.sleep(1)
    return web.Response(text="too late")


setattr(own_probe, PROBE, True)


def setup(app, settings, registry):
    probes_of(app).add_readiness_check("slow", takes_a_while)
    app.router.add_get("/own-probe", own_probe, name="own_probe")


app = App("home", prefix="", setup=setup)
"""
TIGHT_DEFAULTS = "budgets:\n  timeout: 0.05\n  concurrency: 1\n"


async def test_site_defaults_never_shed_probes_or_static_files(
    make_project: ProjectFactory,
) -> None:
    root = make_project(
        {
            "PKG/home/__init__.py": PROBES_APP,
            "PKG/home/routes.py": ROUTES,
            "PKG/home/static/site.css": "body {}\n",
        },
        env_yaml={"test": TIGHT_DEFAULTS},
    )
    async with site_client(root) as client:
        # Twenty at once, each waiting for a check that outlasts the site's timeout.
        probes = await asyncio.gather(*(client.get("/readyz") for _ in range(20)))
        assert [probe.status for probe in probes] == [200] * 20
        scrapes = await asyncio.gather(*(client.get("/metrics") for _ in range(5)))
        assert [scrape.status for scrape in scrapes] == [200] * 5
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/static/site.css")).status == 200
        for name in ("aiosite:healthz", "aiosite:readyz", "aiosite:metrics", "static"):
            assert "aiosite.budgets" not in wrappers(client, name), name
        # An ordinary route has the defaults; a probe's own budget applies.
        assert "aiosite.budgets" in wrappers(client, "home:plain")
        assert (await client.get("/own-probe")).status == 504
        assert trips(client)[("own_probe", "timeout")] == 1
