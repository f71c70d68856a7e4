"""The extension surface (aiosite.hooks) through HTTP: hooks ordered by name, handler
wrappers, request finalizers and exception handlers keyed by class."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from aiohttp import web

from aiosite import Hooks, ImproperlyConfigured, hooks_of, load_site
from aiosite.testing import csrf_headers
from tests.conftest import ProjectFactory, site_client

# Each hook appends its name to a header, so the order they ran in is visible.
SITE = """
    from aiohttp import web

    from aiosite import add_request_finalizer, hooks_of

    LOG = web.RequestKey("test.log", list)
    FINALIZED = web.AppKey("test.finalized", list)


    def request_hook(name):
        def hook(request):
            request.setdefault(LOG, []).append(name)
        return hook


    def async_request_hook(name):
        def hook(request):
            async def later():
                request.setdefault(LOG, []).append(name)
            return later()
        return hook


    def response_hook(name):
        def hook(request, response):
            seen = response.headers.get("X-Response-Hooks")
            response.headers["X-Response-Hooks"] = f"{seen},{name}" if seen else name
        return hook


    async def finalizer_seen(request):
        async def finalizer(exc):
            request.app[FINALIZED].append((request.path, type(exc).__name__))
        add_request_finalizer(request, finalizer)


    def setup(app, settings, registry):
        app[FINALIZED] = []
        hooks = hooks_of(app)
        # Added in an order that the names must override.
        hooks.add_request_hook(request_hook("c"), name="test.c", after=["test.b"])
        hooks.add_request_hook(async_request_hook("b"), name="test.b", after="test.a")
        hooks.add_request_hook(request_hook("a"), name="test.a")
        hooks.add_request_hook(request_hook("first"), name="test.first", before="*")
        hooks.add_request_hook(request_hook("last"), name="test.last", after="*")
        hooks.add_request_hook(
            lambda request: finalizer_seen(request), name="test.finalizer"
        )
        hooks.add_response_hook(response_hook("y"), name="test.y", after="test.x")
        hooks.add_response_hook(response_hook("x"), name="test.x")

        # Hooks for some routes only: decided per route when the site starts.
        def unsafe(route):
            return route.method not in ("GET", "HEAD")

        def posts_only(request, response):
            response.headers["X-Posts-Only"] = request.method

        hooks.add_request_hook(request_hook("posts"), name="test.posts", routes=unsafe)
        hooks.add_response_hook(posts_only, name="test.posts_only", routes=unsafe)

        @web.middleware
        async def outer(request, handler):
            response = await handler(request)
            response.headers["X-Wrapped"] = response.headers.get("X-Wrapped", "") + "outer"
            return response

        @web.middleware
        async def inner(request, handler):
            request.setdefault(LOG, []).append("wrapper")
            response = await handler(request)
            response.headers["X-Wrapped"] = "inner,"
            return response

        hooks.add_handler_wrapper(inner, name="test.inner", after="test.outer")
        hooks.add_handler_wrapper(outer, name="test.outer")

        # Around the CSRF check: a POST with ?refuse=before (or after) is refused by the
        # hook on that side of it, with 429.
        def refuse_on(side):
            def hook(request):
                if request.method == "POST" and request.query.get("refuse") == side:
                    raise web.HTTPTooManyRequests(text=f"refused {side}")
            return hook

        hooks.add_request_hook(refuse_on("before"), name="test.before_csrf", before="aiosite.csrf")
        hooks.add_request_hook(refuse_on("after"), name="test.after_csrf", after="aiosite.csrf")

        async def direct(request):
            return web.Response(text="direct " + request[LOG][-1])

        direct.marker = "kept"
        app.router.add_get("/direct", direct, name="direct")
"""

ROUTES = """
    from aiohttp import web

    from aiosite import Routes

    from PKG.site import LOG

    routes = Routes()


    @routes.get("/log", name="log")
    async def log(request):
        return web.Response(text=",".join(request[LOG]))


    @routes.post("/log", name="post_log")
    async def post_log(request):
        return web.Response(text="posted")


    @routes.get("/fail", name="fail")
    async def fail(request):
        raise KeyError("boom")
"""


@pytest.fixture
def project(make_project: ProjectFactory) -> Path:
    return make_project(
        {"PKG/site.py": SITE, "PKG/probe/routes.py": ROUTES, "PKG/probe/__init__.py": ""},
        apps=["home", "probe"],
    )


async def test_hooks_run_in_the_order_their_names_say(project: Path) -> None:
    async with site_client(project) as client:
        resp = await client.get("/probe/log")
        assert resp.status == 200
        # Request hooks: test.first before every other, aiosite's own among them
        # (allowed hosts also asks for first place: the earlier added of the two wins),
        # then a, b (async), c by their after=, then the rest in the order they were added.
        assert await resp.text() == "first,a,b,c,last,wrapper"
        assert resp.headers["X-Response-Hooks"] == "x,y"
        assert resp.headers["X-Wrapped"] == "inner,outer"
        # The core stayed in its fast mode: handler wrappers are no middlewares.
        assert list(client.app.middlewares) == []


async def test_a_hook_runs_only_on_the_routes_it_asks_for(project: Path) -> None:
    async with site_client(project) as client:
        resp = await client.get("/probe/log")
        assert "posts" not in (await resp.text()).split(",")
        assert "X-Posts-Only" not in resp.headers
        resp = await client.post("/probe/log", headers=await csrf_headers(client))
        assert (resp.status, resp.headers["X-Posts-Only"]) == (200, "POST")
        # A request no route matched runs every hook (its 404 page included).
        resp = await client.get("/nowhere")
        assert (resp.status, resp.headers["X-Posts-Only"]) == (404, "GET")


async def test_hooks_are_ordered_against_the_built_in_ones(project: Path) -> None:
    async with site_client(project) as client:
        # Before aiosite.csrf: refused by the hook although the POST has no token.
        resp = await client.post("/probe/log?refuse=before")
        assert (resp.status, "refused before" in await resp.text()) == (429, True)
        # After it: the CSRF check refuses first.
        resp = await client.post("/probe/log?refuse=after")
        assert resp.status == 403
        resp = await client.post("/probe/log?refuse=after", headers=await csrf_headers(client))
        assert (resp.status, "refused after" in await resp.text()) == (429, True)


async def test_a_route_added_to_the_router_runs_through_the_core_as_itself(
    project: Path,
) -> None:
    async with site_client(project) as client:
        resp = await client.get("/direct")
        # The request hooks and the handler wrappers ran, the request has an id.
        assert await resp.text() == "direct wrapper"
        assert resp.headers["X-Request-ID"]
        assert resp.headers["X-Response-Hooks"] == "x,y"
        handler = next(iter(client.app.router["direct"])).handler
        assert (handler.__name__, handler.marker) == ("direct", "kept")
        assert list(client.app.middlewares) == []


async def test_finalizers_run_after_the_handler_with_what_it_raised(project: Path) -> None:
    async with site_client(project, "production") as client:
        assert (await client.get("/probe/log")).status == 200
        assert (await client.get("/probe/fail")).status == 500
        site = importlib.import_module(f"{project.name}.site")
        expected = [("/probe/log", "NoneType"), ("/probe/fail", "KeyError")]
        assert client.app[site.FINALIZED] == expected


def write_setup(make_project: ProjectFactory, body: str) -> Path:
    site = "from aiosite import hooks_of\n\n\ndef setup(app, settings, registry):\n"
    site += "    hooks = hooks_of(app)\n"
    site += "".join(f"    {line}\n" for line in body.strip().splitlines())
    return make_project({"PKG/site.py": site})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "hooks.add_request_hook(lambda r: None, name='x.check', after=['x.missing'])",
            "request hook 'x.check' is to run after 'x.missing', but no request hook has that "
            "name (the site has: 'aiosite.sessions', 'aiosite.allowed_hosts', 'aiosite.body_size', "
            "'aiosite.csrf', 'aiosite.websocket_origin', 'x.check')",
        ),
        (
            "hooks.add_response_hook(lambda r, s: None, name='x.a', after='x.b')\n"
            "hooks.add_response_hook(lambda r, s: None, name='x.b', after='x.a')\n"
            "hooks.add_response_hook(lambda r, s: None, name='x.c', after='x.b')",
            "the response hooks 'x.a', 'x.b' are ordered in a circle by their before/after; "
            "drop one of those constraints",
        ),
    ],
    ids=["unknown-name", "circle"],
)
def test_an_impossible_order_stops_the_site_with_one_line(
    make_project: ProjectFactory, body: str, message: str
) -> None:
    root = write_setup(make_project, body)
    with pytest.raises(ImproperlyConfigured) as info:
        load_site(root, "test")
    assert str(info.value) == message


def test_names_are_unique_per_kind(make_project: ProjectFactory) -> None:
    root = write_setup(make_project, "hooks.add_request_hook(lambda r: None, name='aiosite.csrf')")
    with pytest.raises(ImproperlyConfigured) as info:
        load_site(root, "test")
    assert str(info.value) == "two request hooks are named 'aiosite.csrf'; give one another name"
    # A response hook may share a request hook's name (the sessions battery has both).
    hooks = Hooks()
    hooks.add_request_hook(lambda request: None, name="x.same")
    hooks.add_response_hook(lambda request, response: None, name="x.same")


async def test_nothing_is_registered_once_the_site_has_started(project: Path) -> None:
    async with site_client(project) as client:
        hooks = hooks_of(client.app)
        with pytest.raises(RuntimeError, match="the site has started"):
            hooks.add_request_hook(lambda request: None, name="late.hook")
        with pytest.raises(RuntimeError, match="the site has started"):
            hooks.add_exception_handler(KeyError, lambda request, exc: None)


def test_hooks_of_an_application_without_a_core() -> None:
    with pytest.raises(RuntimeError, match="no aiosite request core"):
        hooks_of(web.Application())


# --- exception handlers --------------------------------------------------------------

HANDLERS_SITE = """
    from aiohttp import web

    from aiosite import hooks_of, json_response


    class PaymentError(Exception):
        pass


    class CardDeclined(PaymentError):
        pass


    class CardExpired(CardDeclined):
        pass


    class Quiet(Exception):
        pass


    class LoginNeeded(Exception):
        pass


    class BadQuery(Exception):
        pass


    def to_login(request, exc):
        raise web.HTTPSeeOther("/login")


    def bad_query(request, exc):
        raise web.HTTPBadRequest(text='{"problem": "bad query"}', content_type="application/json")


    def payment_page(request, exc):
        raise web.HTTPPaymentRequired(text=f"payment failed: {type(exc).__name__}")


    async def declined(request, exc):
        if "pass" in request.query:
            return None  # to the handler of PaymentError
        return json_response({"declined": type(exc).__name__}, status=402)


    def not_found(request, exc):
        return web.Response(text=f"custom 404 for {request.path}", status=404)


    def everything(request, exc):
        return web.Response(text="caught by Exception", status=418)


    def setup(app, settings, registry):
        hooks = hooks_of(app)
        hooks.add_exception_handler(PaymentError, payment_page)
        hooks.add_exception_handler(CardDeclined, declined)
        hooks.add_exception_handler(web.HTTPNotFound, not_found)
        hooks.add_exception_handler(Exception, everything)
        hooks.add_exception_handler(Quiet, lambda request, exc: 1 / 0)
        hooks.add_exception_handler(LoginNeeded, to_login)
        hooks.add_exception_handler(BadQuery, bad_query)
"""

HANDLERS_ROUTES = """
    from aiohttp import web

    from aiosite import Routes

    from PKG.site import BadQuery, CardDeclined, CardExpired, LoginNeeded, PaymentError, Quiet

    routes = Routes()
    ERRORS = {
        "payment": PaymentError, "declined": CardDeclined, "expired": CardExpired,
        "quiet": Quiet, "other": LookupError, "login": LoginNeeded, "query": BadQuery,
    }


    @routes.get("/{kind}", name="fail")
    async def raise_(request):
        raise ERRORS[request.match_info["kind"]]()
"""


@pytest.fixture
def handlers_project(make_project: ProjectFactory) -> Path:
    files = {
        "PKG/site.py": HANDLERS_SITE,
        "PKG/pay/__init__.py": "",
        "PKG/pay/routes.py": HANDLERS_ROUTES,
    }
    return make_project(files, apps=["home", "pay"])


async def test_the_most_specific_exception_handler_answers(handlers_project: Path) -> None:
    async with site_client(handlers_project, "production") as client:
        resp = await client.get("/pay/payment", headers={"Accept": "text/html"})
        # Raising an HTTP error gives the site's error page for it, with the request id.
        assert resp.status == 402
        assert "payment failed: PaymentError" in await resp.text()
        assert resp.headers["X-Request-ID"]
        assert resp.headers["X-Content-Type-Options"] == "nosniff"  # response hooks ran
        resp = await client.get("/pay/declined")
        assert (resp.status, await resp.json()) == (402, {"declined": "CardDeclined"})
        # A subclass with no handler of its own gets its nearest class's.
        resp = await client.get("/pay/expired")
        assert (resp.status, await resp.json()) == (402, {"declined": "CardExpired"})
        # None passes the exception on to the next more general class.
        resp = await client.get("/pay/expired?pass")
        assert resp.status == 402
        assert "payment failed: CardExpired" in await resp.text()
        # A handler for Exception catches what nothing more specific does...
        resp = await client.get("/pay/other")
        assert (resp.status, await resp.text()) == (418, "caught by Exception")
        # ...but no HTTP error: a 404 is answered by the HTTPNotFound handler.
        resp = await client.get("/no/such/page")
        assert (resp.status, await resp.text()) == (404, "custom 404 for /no/such/page")
        resp = await client.post("/pay/payment")  # no handler for 405: the site's page
        assert resp.status == 405
        assert "<h1>405</h1>" in await resp.text()


async def test_an_exception_handlers_redirect_or_json_error_goes_out_as_raised(
    handlers_project: Path,
) -> None:
    async with site_client(handlers_project, "production") as client:
        resp = await client.get("/pay/login", allow_redirects=False)
        assert (resp.status, resp.headers["Location"]) == (303, "/login")
        assert resp.headers["X-Request-ID"]
        resp = await client.get("/pay/query", headers={"Accept": "text/html"})
        assert resp.status == 400
        assert await resp.json() == {"problem": "bad query"}


async def test_a_failing_exception_handler_gives_a_logged_500(
    handlers_project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with site_client(handlers_project, "production") as client:
        resp = await client.get("/pay/quiet")
        assert resp.status == 500
        assert "ZeroDivisionError" not in await resp.text()
    messages = [record.getMessage() for record in caplog.records]
    assert any(message.startswith("The exception handler") for message in messages)
    assert any("Unhandled Quiet in GET /pay/quiet" in message for message in messages)


def test_an_exception_handler_is_for_an_exception_class() -> None:
    with pytest.raises(ImproperlyConfigured, match="takes an exception class"):
        Hooks().add_exception_handler(str, lambda request, exc: None)  # type: ignore[type-var]


HINT_SITE = """
    from aiosite import hooks_of


    class QuotaExceeded(Exception):
        pass


    def setup(app, settings, registry):
        hooks_of(app).add_exception_hint(QuotaExceeded, "Hint: raise the quota in quota.yaml")
"""

HINT_ROUTES = """
    from aiosite import Routes

    from PKG.site import QuotaExceeded

    routes = Routes()


    @routes.get("/direct", name="direct")
    async def direct(request):
        raise QuotaExceeded("over")


    @routes.get("/wrapped", name="wrapped")
    async def wrapped(request):
        try:
            raise QuotaExceeded("over")
        except QuotaExceeded as exc:
            raise RuntimeError("the upload failed") from exc


    @routes.get("/other", name="other")
    async def other(request):
        raise LookupError("nothing to hint")
"""


async def test_an_exception_hint_is_on_the_log_line_of_its_500(
    make_project: ProjectFactory, caplog: pytest.LogCaptureFixture
) -> None:
    files = {"PKG/site.py": HINT_SITE, "PKG/q/__init__.py": "", "PKG/q/routes.py": HINT_ROUTES}
    root = make_project(files, apps=["home", "q"])
    async with site_client(root, "production") as client:
        for path in ("direct", "wrapped", "other"):
            assert (await client.get(f"/q/{path}")).status == 500
        async with site_client(root, "development") as debug_client:
            page = await (await debug_client.get("/q/wrapped")).text()
            assert '<p class="hint">Hint: raise the quota in quota.yaml</p>' in page
    messages = [r.getMessage() for r in caplog.records if r.name == "aiosite.request"]
    assert messages[:3] == [
        "Unhandled QuotaExceeded in GET /q/direct\nHint: raise the quota in quota.yaml",
        # Raised from the hinted exception: still hinted.
        "Unhandled RuntimeError in GET /q/wrapped\nHint: raise the quota in quota.yaml",
        "Unhandled LookupError in GET /q/other",
    ]


def test_an_exception_hint_is_for_an_exception_class() -> None:
    with pytest.raises(ImproperlyConfigured, match="takes an exception class"):
        Hooks().add_exception_hint(str, "Hint: ...")  # type: ignore[arg-type]
