"""The example blog scaled out on one machine, as issue 15 describes a deployment.

Two ``aiosite serve --workers 2`` instances of the blog, PostgreSQL (a database of this
module's own, behind a TcpProxy the test cuts) and Redis (sessions and the broadcast hub),
and nginx in front (the site file of ``aiosite deploy nginx``) serving the files
``aiosite collectstatic`` gathered. One cluster for the module; the steps run in order,
and from step 4 on a writer posts through nginx the whole time:

1. a login through nginx is seen by 50 requests, which both instances answer;
2. a hashed static file comes from nginx, not from the app, cached for good;
3. a websocket through nginx hears messages posted on either instance;
4. instance A stops (SIGTERM) during a stream of requests and posts: none fails; A
   comes back;
5. a worker of B is SIGKILLed under load: it is replaced and no GET fails;
6. the database goes away for a few seconds: 503 (and /readyz 503), then the site
   recovers without a restart: its first answers once the database is back are 200;
7. every write acknowledged (2xx/3xx) during all this is in the database.

Needs PostgreSQL, Redis and Debian's nginx (``make system-packages``): skipped without
them, failed under AIOSITE_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import REDIS_ADDRESS, require_service
from tests.e2e import scale_out as so
from tests.support.nginx import nginx_binary

pytestmark = pytest.mark.e2e

# Requests a stream sends before its fault, and after the fault has played out.
BEFORE_FAULT = 50
AFTER_FAULT = 60
# Clients posting as fast as they can through A's SIGTERM (step 4): nginx never resends
# a POST, so one sent on a connection A closed under it would fail (A drains instead).
POSTERS = 6
# Seconds the database stays away once the site has noticed.
OUTAGE = 3.0
# Seconds a message takes from one instance's socket to another's, at most.
HEARD_WITHIN = 10.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[so.Cluster]:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    require_service("Redis", *REDIS_ADDRESS)
    binary = nginx_binary()
    with contextlib.ExitStack() as stack:
        yield so.start_cluster(stack, tmp_path_factory.mktemp("scale_out"), binary)


@pytest.fixture(autouse=True)
def _logs_on_failure(request: pytest.FixtureRequest, cluster: so.Cluster) -> Iterator[None]:
    """A failed step shows the tails of the instances' output and nginx's error log."""
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed > failed:
        print(cluster.logs())  # in the failure's captured output


@pytest.fixture(scope="module")
def writer(cluster: so.Cluster) -> Iterator[so.Writer]:
    """Posts drafts through nginx, from the first fault (step 4) to the check (step 7)."""

    async def started() -> so.Writer:
        token = await so.form_token(cluster.visitor, f"{cluster.base}/blog/new")
        writing = so.Writer(cluster.visitor, cluster.base, token, cluster.marker, pause=0.2)
        writing.start()
        return writing

    writing = cluster.run(started())
    yield writing
    cluster.run(writing.stop())


# --- 1. sessions are shared --------------------------------------------------------------


def test_a_login_through_nginx_is_seen_by_both_instances(cluster: so.Cluster) -> None:
    marker = so.new_marker()

    async def fifty() -> list[tuple[int, str | None]]:
        seen = []
        for n in range(50):
            url = f"{cluster.base}/blog/?probe={marker}-{n}"
            async with cluster.visitor.get(url) as resp:
                seen.append((resp.status, so.username_in(await resp.text())))
        return seen

    seen = cluster.run(fifty())
    assert seen == [(200, "ada")] * 50, seen
    so.wait_until(
        lambda: sum(cluster.served(i, marker) for i in cluster.instances) >= 50,
        "the 50 requests in the access logs",
        *cluster.instances,
    )
    counts = [cluster.served(i, marker) for i in cluster.instances]
    cluster.report.append(f"step 1: the 50 requests were served by a, b = {counts}")
    assert sum(counts) == 50, counts
    assert min(counts) > 0, f"one instance answered all of them: a, b = {counts}"


# --- 2. static files -----------------------------------------------------------------------


def test_hashed_static_files_come_from_nginx_and_are_cached_for_good(cluster: so.Cluster) -> None:
    manifest = json.loads((cluster.static_root / "staticfiles.json").read_text())
    hashed = manifest["paths"]["site.css"]
    assert re.fullmatch(r"site\.[0-9a-f]{12}\.css", hashed), hashed
    marker = so.new_marker()

    async def fetch() -> tuple[str, int, dict[str, str], bytes]:
        async with cluster.visitor.get(f"{cluster.base}/") as resp:
            page = await resp.text()
        async with cluster.visitor.get(f"{cluster.base}/static/{hashed}?probe={marker}") as resp:
            return page, resp.status, dict(resp.headers), await resp.read()

    page, status, headers, body = cluster.run(fetch())
    # The pages link the hashed name, which a browser may then keep for good.
    assert f'href="/static/{hashed}"' in page
    assert status == 200, headers
    assert body == (cluster.static_root / hashed).read_bytes()
    assert headers.get("Content-Type", "").startswith("text/css"), headers
    assert "immutable" in headers.get("Cache-Control", ""), headers
    # Not from the app: each of the app's responses carries an X-Request-ID, and no
    # instance logged the request, while a request sent to each straight is logged.
    assert "X-Request-ID" not in headers, headers
    controls = {i.name: so.new_marker() for i in cluster.instances}
    for instance in cluster.instances:
        url = f"{instance.base}/static/{hashed}?probe={controls[instance.name]}"
        assert cluster.run(_status(url)) == 200
    so.wait_until(
        lambda: all(cluster.served(i, controls[i.name]) == 1 for i in cluster.instances),
        "the control requests in the access logs",
        *cluster.instances,
    )
    assert [cluster.served(i, marker) for i in cluster.instances] == [0, 0]


async def _status(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        await resp.read()
        return resp.status


# --- 3. the broadcast hub --------------------------------------------------------------------


def test_a_websocket_through_nginx_hears_messages_posted_on_either_instance(
    cluster: so.Cluster,
) -> None:
    """The listener's socket goes through nginx to one instance or the other; a message
    posted on a socket of A's and another on a socket of B's both reach it, so one of
    them at least went from one instance to the other (through Redis)."""
    room = f"{cluster.marker}-room"
    texts = {i.name: f"hello from {i.name} {so.new_marker()}" for i in cluster.instances}

    async def exchange() -> list[str]:
        visitor = cluster.visitor
        async with visitor.ws_connect(f"{cluster.base}/chat/{room}/ws") as listener:
            assert (await _frame(listener, "the history"))["type"] == "history"
            heard: list[str] = []
            for instance in cluster.instances:
                async with visitor.ws_connect(f"{instance.base}/chat/{room}/ws") as sender:
                    assert (await _frame(sender, "the history"))["type"] == "history"
                    await sender.send_json({"text": texts[instance.name]})
                    echoed = await _frame(sender, "its own message back")
                    assert echoed.get("text") == texts[instance.name], echoed
                frame = await _frame(listener, f"the message posted on {instance.name}")
                assert (frame["type"], frame["author"]) == ("message", "ada"), frame
                heard.append(frame["text"])
            return heard

    assert cluster.run(exchange()) == [texts["a"], texts["b"]]


async def _frame(ws: aiohttp.ClientWebSocketResponse, what: str) -> dict[str, Any]:
    try:
        frame: dict[str, Any] = await ws.receive_json(timeout=HEARD_WITHIN)
    except TimeoutError:
        raise AssertionError(f"no frame within {HEARD_WITHIN} s: expected {what}") from None
    return frame


# --- 4. an instance stops ---------------------------------------------------------------------


def test_sigterm_to_one_instance_during_a_stream_fails_no_request(
    cluster: so.Cluster, writer: so.Writer
) -> None:
    writer.phase = "sigterm"
    a = cluster.a
    marker = so.new_marker()
    errors = cluster.nginx_errors()

    posters = [
        so.Writer(
            cluster.visitor, cluster.base, writer.token, f"{cluster.marker}-sigterm{n}", pause=0
        )
        for n in range(POSTERS)
    ]

    async def stream_through_stop() -> tuple[Counter[str], list[str], int]:
        stream = so.Stream(cluster.visitor, f"{cluster.base}/blog/?probe={marker}")
        stream.start()
        for poster in posters:
            poster.phase = "sigterm"
            poster.start()
        await stream.until_done(BEFORE_FAULT)
        assert cluster.served(a, marker) > 0, "A had none of the stream before it stopped"
        os.kill(a.pid, signal.SIGTERM)  # the master, as systemd's stop or a deploy does
        started = time.monotonic()
        status = await asyncio.to_thread(a.wait, so.STOP_WITHIN)
        cluster.report.append(f"step 4: A stopped {time.monotonic() - started:.1f} s after SIGTERM")
        # Requests go on after A has gone: nginx finds its port closed.
        await stream.until_done(stream.done + AFTER_FAULT)
        for poster in posters:
            await poster.stop()
        return await stream.stop(), stream.failures, status

    outcomes, failures, status = cluster.run(stream_through_stop())
    posted = Counter[str]()
    for poster in posters:
        posted["acknowledged"] += len(poster.acknowledged)
        for (_, outcome), count in poster.refused.items():
            posted[outcome] += count
    cluster.report.append(
        f"step 4: stream through A's SIGTERM: {dict(outcomes)}; POSTs: {dict(posted)}; "
        f"nginx: {cluster.upstream_errors(errors)}"
    )
    assert status == 0, a.tail()
    assert set(outcomes) == {"200"}, (outcomes, failures[:5])
    assert set(posted) == {"acknowledged"}, posted
    stored = cluster.run(so.stored_slugs(cluster.database_url, cluster.marker))
    lost = [slug for p in posters for _, slug in p.acknowledged if slug not in stored]
    assert lost == [], f"acknowledged but not stored: {lost[:5]}"

    # A starts again on its port, and nginx sends it requests again.
    a.start()
    a.wait_healthy()
    back = so.new_marker()

    async def a_serves() -> bool:
        assert await _status_of(cluster, f"/blog/?probe={back}") == 200
        return cluster.served(a, back) > 0

    started = time.monotonic()
    cluster.run(so.eventually(a_serves, "nginx to send requests to A again", within=30))
    cluster.report.append(
        f"step 4: A back in nginx's rotation {time.monotonic() - started:.1f} s after it was ready"
    )
    cluster.run(writer.until_acknowledged("sigterm"))


async def _status_of(cluster: so.Cluster, path: str) -> int:
    async with cluster.visitor.get(f"{cluster.base}{path}") as resp:
        await resp.read()
        return resp.status


# --- 5. a worker dies -------------------------------------------------------------------------


def test_a_worker_killed_under_load_is_replaced_and_no_get_fails(
    cluster: so.Cluster, writer: so.Writer
) -> None:
    writer.phase = "sigkill"
    b = cluster.b
    b.wait_workers(so.WORKERS)
    marker = so.new_marker()
    errors = cluster.nginx_errors()

    async def stream_through_kill() -> tuple[Counter[str], list[str], int, list[int]]:
        stream = so.Stream(cluster.visitor, f"{cluster.base}/blog/?probe={marker}")
        stream.start()
        await stream.until_done(BEFORE_FAULT)
        # The worker with nginx's connections: the one the stream's requests are on.
        victim, connections = b.busiest_worker()
        os.kill(victim, signal.SIGKILL)
        cluster.report.append(f"step 5: the killed worker held {connections} connection(s)")
        replaced = await asyncio.to_thread(b.wait_workers, so.WORKERS, {victim})
        await stream.until_done(stream.done + AFTER_FAULT)
        return await stream.stop(), stream.failures, victim, replaced

    outcomes, failures, victim, workers = cluster.run(stream_through_kill())
    cluster.report.append(
        f"step 5: stream through a SIGKILL of B's worker: {dict(outcomes)}; "
        f"nginx: {cluster.upstream_errors(errors)}"
    )
    # A GET that died with the worker is passed on by nginx to another process.
    assert set(outcomes) == {"200"}, (outcomes, failures[:5])
    assert b.running()
    assert victim not in workers
    assert cluster.run(_status(f"{b.base}/blog/")) == 200
    cluster.run(writer.until_acknowledged("sigkill"))


# --- 6. the database goes away ----------------------------------------------------------------


def test_a_database_outage_is_503_and_the_site_recovers_without_restart(
    cluster: so.Cluster, writer: so.Writer
) -> None:
    writer.phase = "outage"
    processes = {i.name: (i.pid, i.workers()) for i in cluster.instances}

    async def outage() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        await cluster.proxy.stop()
        try:

            async def refused() -> bool:
                return await _status_of(cluster, "/blog/") == 503

            await so.eventually(refused, "a 503 through nginx", within=15)
            seen["during"] = [await _status_of(cluster, "/blog/") for _ in range(10)]
            seen["readyz"] = [await _readyz(i.base) for i in cluster.instances]
            seen["readyz through nginx"] = await _readyz(cluster.base)
            await asyncio.sleep(OUTAGE)
        finally:
            await cluster.proxy.start()
        # At once, with no request in between: the first request to each instance (on a
        # new connection, so any of its workers) and its first /readyz. A worker that
        # had no request during the outage still holds the pooled connections it cut;
        # the pool replaces them when it hands them out (aiosite.db.engine).
        seen["first after"] = {}
        for i in cluster.instances:
            seen["first after"][i.name] = await _status(f"{i.base}/blog/")
            seen["first after"][f"{i.name} /readyz"] = (await _readyz(i.base))[0]
        # Then runs of answers, all 200: through nginx, then from each instance on new
        # connections (which land on any of its workers) and from its /readyz. Any
        # other answer on the way is reported, and fails the step.
        seen["failed after"] = {
            "nginx": await _until_answered(cluster.visitor, f"{cluster.base}/blog/"),
            **{i.name: await _until_answered(None, f"{i.base}/blog/") for i in cluster.instances},
            **{
                f"{i.name} /readyz": await _until_answered(None, f"{i.base}/readyz")
                for i in cluster.instances
            },
        }
        return seen

    seen = cluster.run(outage())
    assert seen["during"] == [503] * 10, seen
    for status, body in [*seen["readyz"], seen["readyz through nginx"]]:
        assert status == 503, seen
        assert "database" in body["checks"], seen
    cluster.report.append(
        f"step 6: during the outage: /blog/ through nginx {seen['during']}, /readyz of a, b "
        f"and through nginx {[s for s, _ in [*seen['readyz'], seen['readyz through nginx']]]}"
    )
    cluster.report.append(
        f"step 6: first answers once back: {seen['first after']}; "
        f"answers other than 200 once back: {seen['failed after']}"
    )
    assert set(seen["first after"].values()) == {200}, seen
    assert not any(seen["failed after"].values()), seen
    # Recovered by itself: the same masters and workers as before the outage.
    assert {i.name: (i.pid, i.workers()) for i in cluster.instances} == processes
    cluster.run(writer.until_acknowledged("outage"))


async def _until_answered(
    session: aiohttp.ClientSession | None, url: str, in_a_row: int = 10, within: float = 20.0
) -> list[str]:
    """GET ``url`` until it answers 200 ``in_a_row`` times in a row; the other answers
    on the way. Without ``session``, each request opens a connection of its own."""
    others: list[str] = []
    streak = 0

    async def answered() -> bool:
        nonlocal streak
        async with contextlib.AsyncExitStack() as stack:
            client = session
            if client is None:
                fresh = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
                client = await stack.enter_async_context(fresh)
            async with client.get(url) as resp:
                body = await resp.text()
                streak = streak + 1 if resp.status == 200 else 0
                if resp.status != 200:
                    title = re.search(r"<title>([^<]*)</title>", body)
                    others.append(f"{resp.status} {title.group(1) if title else body[:80]}")
        return streak >= in_a_row

    await so.eventually(answered, f"{in_a_row} answers 200 in a row from {url}", within)
    return others


async def _readyz(base: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/readyz") as resp:
        body: dict[str, Any] = await resp.json()
        return resp.status, body


# --- 7. nothing acknowledged is lost ------------------------------------------------------------


def test_every_write_acknowledged_during_the_faults_is_in_the_database(
    cluster: so.Cluster, writer: so.Writer
) -> None:
    cluster.run(writer.stop())
    stored = cluster.run(so.stored_slugs(cluster.database_url, cluster.marker))
    cluster.report.append(f"writer: {writer.summary()}")
    print("\n".join(cluster.report))  # shown with -s or -rA
    acknowledged = [slug for _, slug in writer.acknowledged]
    missing = [slug for slug in acknowledged if slug not in stored]
    assert missing == [], f"acknowledged but not stored: {missing}"
    # Every fault was answered (a 503, another process), none was a crash.
    for instance in cluster.instances:
        output = instance.output()
        errors = [line for line in output.splitlines() if '"level":"ERROR"' in line]
        assert "Traceback" not in output, instance.name
        assert errors == [], (instance.name, errors[:3])
