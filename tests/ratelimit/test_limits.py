"""Rate limits through HTTP, counted in memory: 429 with Retry-After past the limit, on
the site's error page or as JSON; per key, per scope, per method; open again after the
window."""

from __future__ import annotations

import asyncio

import pytest

from aiosite import rate_limit
from tests.conftest import ProjectFactory, site_client
from tests.ratelimit.support import a_minute_at_most, from_address, limited_project


async def test_the_request_past_the_limit_gets_429_and_the_error_page(
    make_project: ProjectFactory,
) -> None:
    async with site_client(limited_project(make_project)) as client:
        for _ in range(2):
            response = await client.get("/limited")
            assert (response.status, await response.text()) == (200, "served")
        refused = await client.get("/limited")
        assert refused.status == 429
        # Until the first hit leaves the minute's window, in whole seconds rounded up.
        seconds = a_minute_at_most(refused.headers["Retry-After"])
        wait = "1 second" if seconds == 1 else f"{seconds} seconds"
        assert refused.content_type == "text/html"
        page = await refused.text()
        assert "<h1>429</h1>" in page
        assert f"Too many requests: this allows 2 per 1 minute. Try again in {wait}." in page


async def test_json_clients_get_json(make_project: ProjectFactory) -> None:
    json = {"Accept": "application/json"}
    async with site_client(limited_project(make_project)) as client:
        for _ in range(2):
            assert (await client.get("/limited", headers=json)).status == 200
        refused = await client.get("/limited", headers=json)
        assert refused.status == 429
        a_minute_at_most(refused.headers["Retry-After"])
        body = await refused.json()
        assert body["error"]["status"] == 429
        assert body["error"]["message"].startswith("Too many requests: this allows 2 per")


async def test_each_address_has_a_budget_of_its_own(make_project: ProjectFactory) -> None:
    async with site_client(limited_project(make_project)) as client:
        for _ in range(2):
            assert (await client.get("/limited", headers=from_address("203.0.113.5"))).ok
        assert (await client.get("/limited", headers=from_address("203.0.113.5"))).status == 429
        assert (await client.get("/limited", headers=from_address("203.0.113.6"))).ok
        # One IPv6 subscriber holds a /64: its addresses share one budget.
        for address in ("2001:db8:1:2::1", "2001:db8:1:2::2"):
            assert (await client.get("/limited", headers=from_address(address))).ok
        ipv6 = await client.get("/limited", headers=from_address("2001:db8:1:2:ffff::3"))
        assert ipv6.status == 429
        assert (await client.get("/limited", headers=from_address("2001:db8:1:3::1"))).ok


async def test_requests_pass_again_once_retry_after_has_passed(
    make_project: ProjectFactory,
) -> None:
    async with site_client(limited_project(make_project)) as client:
        # "1/second": two requests less than a second apart, the second refused. On a
        # machine so loaded that they were not, the allowed one opens a new window.
        for _ in range(10):
            refused = await client.get("/short")
            if refused.status == 429:
                break
            assert refused.ok
        else:
            pytest.fail("no two requests of ten came within a second of each other")
        assert refused.headers["Retry-After"] == "1"  # rounded up
        # A refused request is not counted: asking again does not push the window on.
        await asyncio.sleep(int(refused.headers["Retry-After"]))
        deadline = asyncio.get_running_loop().time() + 5
        while (response := await client.get("/short")).status == 429:
            assert asyncio.get_running_loop().time() < deadline, "still refused 5 s later"
            await asyncio.sleep(0.05)
        assert (response.status, await response.text()) == (200, "short")


async def test_only_the_methods_named_are_counted(make_project: ProjectFactory) -> None:
    async with site_client(limited_project(make_project)) as client:
        assert (await client.post("/form")).ok
        refused = await client.post("/form")
        assert refused.status == 429
        a_minute_at_most(refused.headers["Retry-After"])
        for _ in range(3):
            assert await (await client.get("/form")).text() == "GET"


async def test_a_view_method_with_an_async_key(make_project: ProjectFactory) -> None:
    async with site_client(limited_project(make_project)) as client:
        alice, bob = {"X-Token": "alice"}, {"X-Token": "bob"}
        assert (await client.post("/comments", headers=alice)).ok
        assert (await client.post("/comments", headers=alice)).status == 429
        assert (await client.post("/comments", headers=bob)).ok
        # The view's other methods are not limited.
        assert await (await client.get("/comments", headers=alice)).text() == "listed"
        # A key function's None exempts the request.
        for _ in range(3):
            assert (await client.post("/comments")).ok


async def test_routes_of_one_scope_share_a_budget(make_project: ProjectFactory) -> None:
    token = {"X-Token": "alice"}
    async with site_client(limited_project(make_project)) as client:
        assert (await client.get("/shared-a", headers=token)).ok
        assert (await client.get("/shared-b", headers=token)).status == 429
        assert (await client.get("/shared-a", headers=token)).status == 429


async def test_a_handler_can_answer_a_refusal_its_own_way(make_project: ProjectFactory) -> None:
    token = {"X-Token": "alice"}
    async with site_client(limited_project(make_project)) as client:
        assert await (await client.get("/inside", headers=token)).text() == "inside"
        refused = await client.get("/inside", headers=token)
        assert refused.status == 429
        assert (await refused.text()).endswith("s (1 per 1 minute)")
        assert "Retry-After" not in refused.headers


async def test_check_rate_limit_refuses_with_the_sites_429(make_project: ProjectFactory) -> None:
    token = {"X-Token": "alice"}
    async with site_client(limited_project(make_project)) as client:
        assert await (await client.get("/checked", headers=token)).text() == "checked"
        refused = await client.get("/checked", headers=token)
        assert refused.status == 429
        a_minute_at_most(refused.headers["Retry-After"])
        assert "<h1>429</h1>" in await refused.text()


async def test_a_refused_form_comes_back_with_its_error_and_what_was_typed(
    make_project: ProjectFactory,
) -> None:
    # docs/rate-limits.md's hit_rate_limit example: form.add_error on an aiosite Form.
    token = {"X-Token": "alice"}
    async with site_client(limited_project(make_project)) as client:
        sent = await client.post("/inside-form", data={"body": "first"}, headers=token)
        assert (sent.status, await sent.text()) == (200, "sent")
        refused = await client.post("/inside-form", data={"body": "second"}, headers=token)
        assert refused.status == 429
        seconds = a_minute_at_most(refused.headers["Retry-After"])
        html = await refused.text()
        assert f'<p class="error">Wait {seconds} seconds and send it again.</p>' in html
        assert '<textarea name="body">second</textarea>' in html


async def test_limits_can_be_turned_off(make_project: ProjectFactory) -> None:
    root = limited_project(make_project, "ratelimit:\n  enabled: false\n")
    async with site_client(root) as client:
        for _ in range(4):
            assert (await client.get("/limited")).ok


@pytest.mark.parametrize("text", ["5/minnute", "0/minute", "five", "5/minute;100/hour"])
def test_a_limit_that_does_not_parse_is_refused_with_an_example(text: str) -> None:
    with pytest.raises(ValueError, match=r'e\.g\. "5/minute"'):
        rate_limit(text)
