"""Error pages, JSON errors, the debug page, request ids and the access log."""

from __future__ import annotations

import logging

import pytest
from aiohttp.test_utils import TestClient, TestServer

from aiosite import load_site
from aiosite.testing import csrf_headers
from aiosite.web.logs import AccessLogger
from tests.conftest import ProjectFactory, site_client

FILES = {
    "PKG/templates/404.html": "custom 404 for {{ request.path }}: {{ message or '' }}",
    "PKG/templates/base.html": "{% block content %}{% endblock %}",
    "PKG/shop/__init__.py": "",
    "PKG/shop/routes.py": """
        from aiohttp import web
        from aiosite import Routes

        routes = Routes()

        @routes.get("/boom", name="boom")
        async def boom(request: web.Request) -> web.Response:
            api_password = request.query.get("password")
            raise RuntimeError("kaboom <script>")

        @routes.get("/gone", name="gone")
        async def gone(request: web.Request) -> web.Response:
            raise web.HTTPNotFound(text="That item was sold out.")

        @routes.get("/teapot", name="teapot")
        async def teapot(request: web.Request) -> web.Response:
            raise web.HTTPForbidden()

        @routes.get("/json-error", name="json_error")
        async def json_error(request: web.Request) -> web.Response:
            raise web.HTTPBadRequest(text='{"mine": true}', content_type="application/json")

        @routes.get("/moved", name="moved")
        async def moved(request: web.Request) -> web.Response:
            raise web.HTTPFound("/shop/boom")

        @routes.get("/api-ish", name="api_ish", api=True)
        async def api_ish(request: web.Request) -> web.Response:
            raise web.HTTPConflict(text="Already there.")
    """,
    "PKG/api/__init__.py": 'from aiosite import App\napp = App("api", prefix="/api", api=True)\n',
    "PKG/api/routes.py": """
        from aiohttp import web
        from aiosite import Routes

        routes = Routes()

        @routes.get("/page", name="page", api=False)
        async def page(request: web.Request) -> web.Response:
            raise web.HTTPNotFound()

        @routes.get("/posts/{id}", name="post")
        async def post(request: web.Request) -> web.Response:
            raise RuntimeError("database exploded")
    """,
}


@pytest.fixture
def project(make_project: ProjectFactory):  # type: ignore[no-untyped-def]
    return make_project(FILES, apps=["home", "shop", "api"])


async def test_404_from_project_template(project) -> None:  # type: ignore[no-untyped-def]
    async with site_client(project) as client:
        resp = await client.get("/nowhere", headers={"Accept": "text/html"})
        assert resp.status == 404
        assert resp.content_type == "text/html"
        assert await resp.text() == "custom 404 for /nowhere: "
        gone = await client.get("/shop/gone")
        assert await gone.text() == "custom 404 for /shop/gone: That item was sold out."


async def test_other_statuses_use_error_html(project) -> None:  # type: ignore[no-untyped-def]
    async with site_client(project) as client:
        resp = await client.get("/shop/teapot")
        assert resp.status == 403
        assert "<h1>403</h1>" in await resp.text()
        resp = await client.post("/shop/boom", headers=await csrf_headers(client))
        assert resp.status == 405
        assert resp.headers["Allow"] == "GET,HEAD"
        assert "Method Not Allowed" in await resp.text()


async def test_json_errors(project) -> None:  # type: ignore[no-untyped-def]
    async with site_client(project) as client:
        resp = await client.get("/nowhere", headers={"Accept": "application/json"})
        assert resp.status == 404
        assert await resp.json() == {
            "error": {"status": 404, "reason": "Not Found", "message": None}
        }
        resp = await client.get("/api/posts/1")
        assert resp.status == 500
        assert await resp.json() == {
            "error": {"status": 500, "reason": "Internal Server Error", "message": None}
        }
        resp = await client.get("/api/missing")
        assert resp.status == 404
        assert resp.content_type == "application/json"
        resp = await client.get("/api/page")
        assert resp.status == 404
        assert resp.content_type == "text/html"
        resp = await client.get("/shop/api-ish")
        assert resp.status == 409
        assert (await resp.json())["error"]["message"] == "Already there."
        resp = await client.get("/shop/json-error")
        assert resp.status == 400
        assert await resp.json() == {"mine": True}


async def test_500_hides_everything_outside_debug(project, caplog) -> None:  # type: ignore[no-untyped-def]
    async with site_client(project, "production") as client:
        resp = await client.get("/shop/boom")
        assert resp.status == 500
        body = await resp.text()
        assert "Internal Server Error" in body
        for leak in ("kaboom", "RuntimeError", "hunter2", "Traceback", "routes.py"):
            assert leak not in body
    assert any("Unhandled RuntimeError in GET /shop/boom" in r.getMessage() for r in caplog.records)


async def test_debug_500_shows_the_traceback_with_secrets_masked(project) -> None:  # type: ignore[no-untyped-def]
    async with site_client(project, "development") as client:
        resp = await client.get(
            "/shop/boom?password=hunter2-secret", headers={"Authorization": "Bearer abc123"}
        )
        assert resp.status == 500
        body = await resp.text()
        assert "RuntimeError: kaboom &lt;script&gt;" in body
        assert "routes.py" in body
        assert "api_password" in body
        assert "hunter2-secret" not in body
        assert "abc123" not in body
        resp = await client.get("/api/posts/1")
        data = await resp.json()
        assert data["error"]["message"] == "RuntimeError: database exploded"
        assert "Traceback" in data["error"]["traceback"]


async def test_broken_error_template_falls_back_to_text(make_project: ProjectFactory) -> None:
    root = make_project({"PKG/templates/404.html": "{% if %}"})
    async with site_client(root) as client:
        resp = await client.get("/nowhere")
        assert resp.status == 404
        assert await resp.text() == "404: Not Found"


# A site that reports every exception it is asked to answer (as Sentry or an email
# report would), and answers with a 500 of its own.
REPORTING_SITE = """
    import logging

    from aiohttp import web
    from aiosite import hooks_of


    def report(request, exc):
        logging.getLogger("mysite.reports").error("reported %s", type(exc).__name__)
        return web.Response(text="reported", status=500)


    def setup(app, settings, registry):
        hooks_of(app).add_exception_handler(Exception, report)
"""


async def test_a_bug_in_an_error_template_is_logged_with_its_traceback(
    make_project: ProjectFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # The site's catch-all handler must neither pass the template's bug off as an
    # outage (a warning without traceback) nor be asked about it.
    files = {"PKG/templates/404.html": "{{ undefined_func() }}", "PKG/site.py": REPORTING_SITE}
    async with site_client(make_project(files), "production") as client:
        resp = await client.get("/nowhere", headers={"Accept": "text/html"})
        assert resp.status == 404
        assert await resp.text() == "404: Not Found"
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.ERROR, "Rendering the error page 404.html failed")
    ]
    assert records[0].exc_info is not None
    assert "undefined_func" in caplog.text  # the traceback names the template's bug


async def test_request_ids(project) -> None:  # type: ignore[no-untyped-def]
    async with site_client(project) as client:
        first = (await client.get("/")).headers["X-Request-ID"]
        second = (await client.get("/")).headers["X-Request-ID"]
        assert first != second
        assert len(first) >= 12
        kept = await client.get("/", headers={"X-Request-ID": "edge-abc.123"})
        assert kept.headers["X-Request-ID"] == "edge-abc.123"
        for insane in ("x" * 200, "a b", "<script>", "é"):
            resp = await client.get("/", headers={"X-Request-ID": insane})
            assert resp.headers["X-Request-ID"] != insane
        redirect = await client.get("/shop/moved", allow_redirects=False)
        assert redirect.status == 302
        assert redirect.headers["X-Request-ID"]
        assert (await client.get("/nowhere")).headers["X-Request-ID"]
        assert (await client.get("/static/home/site.css")).headers["X-Request-ID"]


async def test_access_log_has_request_id_and_time(project, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="aiosite.access")
    server = TestServer(load_site(project, "test"))
    await server.start_server(
        access_log_class=AccessLogger, access_log=logging.getLogger("aiosite.access")
    )
    async with TestClient(server) as client:
        await client.get("/?token=abc&page=2", headers={"X-Request-ID": "rid-42"})
    records = [r for r in caplog.records if r.name == "aiosite.access"]
    assert records, "no access log line"
    line = records[-1].getMessage()
    assert '"GET /?token=********&page=2" 200' in line
    assert "abc" not in line
    assert line.endswith("ms")
    assert records[-1].request_id == "rid-42"  # type: ignore[attr-defined]
    assert records[-1].duration_ms >= 0  # type: ignore[attr-defined]


async def test_streaming_handler_sets_its_own_request_id(make_project: ProjectFactory) -> None:
    routes = """
        from aiohttp import web
        from aiosite import REQUEST_ID, Routes
        routes = Routes()

        @routes.get("/", name="index")
        async def events(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"X-Request-ID": request[REQUEST_ID]})
            await response.prepare(request)
            await response.write(b"data: one\\n\\n")
            return response
    """
    root = make_project({"PKG/home/routes.py": routes})
    async with site_client(root) as client:
        resp = await client.get("/", headers={"X-Request-ID": "stream-1"})
        assert resp.headers["X-Request-ID"] == "stream-1"
        assert await resp.text() == "data: one\n\n"
