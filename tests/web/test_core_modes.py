"""The per-request core in its two modes, through HTTP.

By default it wraps the handlers aiosite mounts and answers unmatched requests through a
fallback resource (no aiohttp middleware at all); when the site has middlewares or routes
aiosite did not mount, it is the outermost middleware instead. Either way every request
gets one request id, its finalizers and the site's error pages.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from aiosite import NoReverseMatch, database_of, load_site, url_for
from aiosite.debug.blocking import BLOCK_DETECTOR
from aiosite.testing import csrf_headers
from aiosite.web.core import CORE
from tests.conftest import ProjectFactory, TestDatabase, site_client, site_with_tables

Client = TestClient[web.Request, web.Application]

NOT_FOUND_PAGE = "site 404 for {{ request.path }}{% if message %}: {{ message }}{% endif %}"

HOME_ROUTES = """
    from aiohttp import web

    from aiosite import REQUEST_ID, Routes, json_response, template, url_for

    routes = Routes()


    @routes.get("/", name="index")
    @template("home/index.html")
    async def index(request: web.Request) -> dict[str, object]:
        return {"greeting": "Hi"}


    @routes.get("/{name}", name="page")
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=f"page {request.match_info['name']}")


    @routes.post("/submit", name="submit")
    async def submit(request: web.Request) -> web.Response:
        return web.Response(text="submitted")


    @routes.get("/info/state", name="state")
    async def state(request: web.Request) -> web.Response:
        return json_response(
            {
                "middlewares": len(request.app.middlewares),
                "request_id": request[REQUEST_ID],
                "page_url": url_for(request, "home:page", name="bob"),
                "index_url": url_for(request, "home:index"),
            }
        )


    @routes.get("/info/gone", name="gone")
    async def gone(request: web.Request) -> web.Response:
        raise web.HTTPNotFound(text="mounted and gone")
"""

API = {
    "PKG/api/__init__.py": 'from aiosite import App\napp = App("api", prefix="/api", api=True)\n',
    "PKG/api/routes.py": """
        from aiosite import Routes, json_response

        routes = Routes()

        @routes.get("/items", name="items")
        async def items(request):
            return json_response({"items": []})
    """,
}

FILES = {
    "PKG/home/routes.py": HOME_ROUTES,
    "PKG/templates/404.html": NOT_FOUND_PAGE,
    **API,
}

# Outer mode, (a): a project middleware, which must find the core already around it.
MIDDLEWARE_SITE = """
    from aiohttp import web

    from aiosite import REQUEST_ID


    @web.middleware
    async def stamp(request, handler):
        seen = request.get(REQUEST_ID, "none")
        if request.query.get("explode") == "middleware":
            raise RuntimeError("the middleware exploded")
        response = await handler(request)
        response.headers["X-Seen-Request-ID"] = seen
        return response


    middlewares = [stamp]
"""

# Outer mode, (b) and (c): a route and a sub-application the setup hook adds itself.
NOTES_MODELS = """
    from sqlalchemy import String
    from sqlalchemy.orm import Mapped, mapped_column

    from aiosite import Model


    class Note(Model):
        __tablename__ = "PKG_note"

        id: Mapped[int] = mapped_column(primary_key=True)
        text: Mapped[str] = mapped_column(String(100))
"""

SETUP_SITE = """
    from aiohttp import web
    from sqlalchemy import func, select

    from aiosite import REQUEST_ID, db_session, json_response

    from PKG.notes.models import Note


    async def missing(request):
        raise web.HTTPNotFound(text="no such extra")


    async def add_note(request):
        session = db_session(request)
        session.add(Note(text=request.query["text"]))
        await session.flush()
        if request.query.get("then") == "fail":
            raise RuntimeError("failed after writing")
        return json_response({"added": True}, status=201)


    async def count_notes(request):
        total = await db_session(request).scalar(select(func.count()).select_from(Note))
        return json_response({"count": total, "request_id": request[REQUEST_ID]})


    async def boom(request):
        secret_local = "hunter2"
        raise RuntimeError(f"extra exploded with {secret_local}")


    async def sub_ok(request):
        return web.Response(text=request[REQUEST_ID])


    async def sub_missing(request):
        raise web.HTTPNotFound(text="not in the sub-app")


    def setup(app, settings, registry):
        app.router.add_get("/extra/missing", missing)
        app.router.add_post("/extra/notes", add_note)
        app.router.add_get("/extra/notes", count_notes)
        app.router.add_get("/extra/boom", boom)
        sub = web.Application()
        sub.router.add_get("/ok", sub_ok)
        sub.router.add_get("/missing", sub_missing)
        app.add_subapp("/sub", sub)
"""


@pytest.fixture
def project(make_project: ProjectFactory) -> Path:
    return make_project(FILES, apps=["home", "api"])


async def test_the_default_site_installs_no_middleware(project: Path) -> None:
    async with site_client(project) as client:
        assert list(client.app.middlewares) == []
        resp = await client.get("/info/state")
        assert resp.status == 200
        body = await resp.json()
        assert body["middlewares"] == 0
        # One core per request: the id the handler saw is the one on the response.
        assert body["request_id"] == resp.headers["X-Request-ID"]


async def test_request_ids_without_a_middleware(project: Path) -> None:
    async with site_client(project) as client:
        responses = [
            await client.get("/"),
            await client.get("/alice"),
            await client.get("/no/such/page"),
            await client.post("/alice", headers=await csrf_headers(client)),
            await client.get("/api/nowhere"),
            await client.get("/static/home/site.css"),
            await client.get("/static/home/missing.css"),
            await client.head("/"),
        ]
        ids = [resp.headers.getall("X-Request-ID") for resp in responses]
        assert all(len(found) == 1 for found in ids), ids
        assert len({found[0] for found in ids}) == len(ids)
        kept = await client.get("/no/such/page", headers={"X-Request-ID": "edge-7"})
        assert kept.headers["X-Request-ID"] == "edge-7"


async def test_an_unknown_path_gets_the_sites_404_page(project: Path) -> None:
    async with site_client(project) as client:
        resp = await client.get("/no/such/page", headers={"Accept": "text/html"})
        assert resp.status == 404
        assert resp.content_type == "text/html"
        assert await resp.text() == "site 404 for /no/such/page"
        # A mounted handler's own 404 gets the same page, with its message.
        resp = await client.get("/info/gone")
        assert await resp.text() == "site 404 for /info/gone: mounted and gone"


async def test_a_wrong_method_gets_the_sites_405_page_with_allow(project: Path) -> None:
    async with site_client(project) as client:
        resp = await client.post("/info/state", headers=await csrf_headers(client))
        assert resp.status == 405
        assert set(resp.headers["Allow"].split(",")) == {"GET", "HEAD"}
        assert "<h1>405</h1>" in await resp.text()
        resp = await client.get("/submit")  # /submit is POST-only; GET /{name} matches
        assert await resp.text() == "page submit"
        resp = await client.delete("/submit", headers=await csrf_headers(client))
        assert resp.status == 405
        assert set(resp.headers["Allow"].split(",")) == {"GET", "HEAD", "POST"}


async def test_an_unknown_path_under_an_api_app_gets_json(project: Path) -> None:
    async with site_client(project) as client:
        resp = await client.get("/api/nowhere", headers={"Accept": "text/html"})
        assert resp.status == 404
        assert await resp.json() == {
            "error": {"status": 404, "reason": "Not Found", "message": None}
        }
        resp = await client.put("/api/items", headers=await csrf_headers(client))
        assert resp.status == 405
        assert resp.content_type == "application/json"
        assert (await resp.json())["error"]["status"] == 405
        assert (await client.get("/api/items")).status == 200


async def test_head_requests(project: Path) -> None:
    async with site_client(project) as client:
        resp = await client.head("/")
        assert resp.status == 200
        assert await resp.read() == b""
        resp = await client.head("/no/such/page")
        assert resp.status == 404
        assert resp.headers["X-Request-ID"]


async def test_a_missing_static_file_gets_the_sites_404_page(project: Path) -> None:
    async with site_client(project) as client:
        resp = await client.get("/static/home/site.css")
        assert resp.status == 200
        assert "color: #123" in await resp.text()
        resp = await client.get("/static/home/missing.css")
        assert resp.status == 404
        assert await resp.text() == "site 404 for /static/home/missing.css"


async def test_the_fallback_shadows_no_route_and_names_none(project: Path) -> None:
    async with site_client(project) as client:
        resp = await client.get("/")
        assert resp.status == 200
        assert await resp.text() == "<p>Hi from Test Site</p>"
        resp = await client.get("/alice")
        assert await resp.text() == "page alice"
        body = await (await client.get("/info/state")).json()
        assert (body["page_url"], body["index_url"]) == ("/bob", "/")
        assert url_for(client.app, "home:page", name="x") == "/x"
        assert url_for(client.app, "api:items") == "/api/items"
        with pytest.raises(NoReverseMatch, match="did you mean 'home:page'"):
            url_for(client.app, "home:pages")
        named = client.app.router.named_resources()
        assert set(named) == {
            "home:index",
            "home:page",
            "home:submit",
            "home:state",
            "home:gone",
            "api:items",
            "static",
            # The health and metrics batteries' probes.
            "aiosite:healthz",
            "aiosite:readyz",
            "aiosite:metrics",
        }


# --- outer mode ----------------------------------------------------------------------


async def test_a_project_middleware_runs_inside_the_core(make_project: ProjectFactory) -> None:
    root = make_project({**FILES, "PKG/site.py": MIDDLEWARE_SITE}, apps=["home", "api"])
    async with site_client(root) as client:
        for path, status in (("/info/state", 200), ("/no/such/page", 404), ("/alice", 200)):
            resp = await client.get(path)
            assert resp.status == status
            (request_id,) = resp.headers.getall("X-Request-ID")
            if status == 200:
                # The middleware saw the id the core set before it: the core is outside.
                assert resp.headers["X-Seen-Request-ID"] == request_id
        body = await (await client.get("/info/state")).json()
        assert body["middlewares"] == 2  # the core, then the project's
        resp = await client.get("/info/state")
        assert (await resp.json())["request_id"] == resp.headers["X-Request-ID"]


async def test_an_exception_in_a_project_middleware_gets_the_sites_500_page(
    make_project: ProjectFactory,
) -> None:
    root = make_project({**FILES, "PKG/site.py": MIDDLEWARE_SITE}, apps=["home", "api"])
    async with site_client(root, "production") as client:
        resp = await client.get("/alice", params={"explode": "middleware"})
        assert resp.status == 500
        body = await resp.text()
        assert "<h1>500</h1>" in body
        assert "Internal Server Error" in body
        assert "exploded" not in body
        assert len(resp.headers.getall("X-Request-ID")) == 1


async def test_outer_mode_keeps_the_error_pages_of_mounted_routes(
    make_project: ProjectFactory,
) -> None:
    root = make_project({**FILES, "PKG/site.py": MIDDLEWARE_SITE}, apps=["home", "api"])
    async with site_client(root) as client:
        resp = await client.get("/info/gone")
        assert await resp.text() == "site 404 for /info/gone: mounted and gone"
        resp = await client.post("/info/state", headers=await csrf_headers(client))
        assert resp.status == 405
        assert set(resp.headers["Allow"].split(",")) == {"GET", "HEAD"}
        assert "<h1>405</h1>" in await resp.text()
        resp = await client.get("/api/nowhere")
        assert (await resp.json())["error"]["status"] == 404
        resp = await client.get("/static/home/missing.css")
        assert await resp.text() == "site 404 for /static/home/missing.css"


@pytest.fixture
def setup_project(make_project: ProjectFactory, database: TestDatabase) -> Path:
    files = {
        **FILES,
        "PKG/notes/__init__.py": "",
        "PKG/notes/models.py": NOTES_MODELS,
        "PKG/site.py": SETUP_SITE,
    }
    return make_project(files, apps=["home", "api", "notes"])


@pytest.mark.db_backends("sqlite")
async def test_a_route_added_in_setup_gets_error_pages_and_finalizers(
    setup_project: Path,
) -> None:
    async with site_with_tables(setup_project) as client:
        resp = await client.get("/extra/missing")
        assert resp.status == 404
        assert await resp.text() == "site 404 for /extra/missing: no such extra"
        assert resp.headers["X-Request-ID"]
        # The request's session is committed once the handler returns...
        resp = await client.post(
            "/extra/notes", params={"text": "kept"}, headers=await csrf_headers(client)
        )
        assert resp.status == 201
        # ...and rolled back when it raises.
        resp = await client.post(
            "/extra/notes",
            params={"text": "lost", "then": "fail"},
            headers=await csrf_headers(client),
        )
        assert resp.status == 500
        resp = await client.get("/extra/notes")
        body = await resp.json()
        assert body["count"] == 1
        assert body["request_id"] == resp.headers["X-Request-ID"]
        assert database_of(client.app).engine.sync_engine.pool.checkedout() == 0
        # A mounted route runs inside the outer core once: the handler's id is the header's.
        resp = await client.get("/info/state")
        assert (await resp.json())["request_id"] == resp.headers["X-Request-ID"]
        # The routes aiosite mounted keep their pages too.
        assert await (await client.get("/no/such/page")).text() == "site 404 for /no/such/page"
        assert await (await client.get("/alice")).text() == "page alice"


@pytest.mark.db_backends("sqlite")
async def test_a_sub_application_added_in_setup_gets_error_pages(setup_project: Path) -> None:
    async with site_with_tables(setup_project) as client:
        resp = await client.get("/sub/ok")
        assert resp.status == 200
        assert await resp.text() == resp.headers["X-Request-ID"]
        resp = await client.get("/sub/missing")
        assert resp.status == 404
        assert await resp.text() == "site 404 for /sub/missing: not in the sub-app"
        resp = await client.get("/sub/nothing/here")
        assert resp.status == 404
        assert await resp.text() == "site 404 for /sub/nothing/here"
        assert resp.headers["X-Request-ID"]
        resp = await client.post("/sub/ok", headers=await csrf_headers(client))
        assert resp.status == 405
        assert "<h1>405</h1>" in await resp.text()


@pytest.mark.db_backends("sqlite")
async def test_a_route_added_in_setup_that_raises_gets_the_500_page_in_production(
    setup_project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with site_with_tables(setup_project, "production") as client:
        resp = await client.get("/extra/boom")
        assert resp.status == 500
        body = await resp.text()
        assert "<h1>500</h1>" in body
        for leak in ("exploded", "hunter2", "RuntimeError", "Traceback", "site.py"):
            assert leak not in body
        assert resp.headers["X-Request-ID"]
    assert any(
        "Unhandled RuntimeError in GET /extra/boom" in r.getMessage() for r in caplog.records
    )


async def test_a_site_mounted_as_a_sub_application_keeps_its_core(project: Path) -> None:
    # add_subapp freezes the site's router and middlewares at once, before startup.
    parent = web.Application()
    parent.add_subapp("/site", load_site(project, "test"))
    async with TestClient(TestServer(parent)) as client:
        resp = await client.get("/site/alice")
        assert (resp.status, await resp.text()) == (200, "page alice")
        assert "X-Request-ID" in resp.headers
        missing = await client.get("/site/no/such/page", headers={"Accept": "text/html"})
        assert missing.status == 404
        assert "site 404 for /site/no/such/page" in await missing.text()
        assert "X-Request-ID" in missing.headers


async def test_routes_added_after_create_site_are_not_shadowed(project: Path) -> None:
    async def late(request: web.Request) -> web.Response:
        return web.Response(text=f"late {request.match_info['slug']}")

    site = load_site(project, "test")
    # After the fallback resource was registered, in the same index bucket ("/").
    site.router.add_get("/late/{slug}", late)
    site.router.add_get("/{a}/{b}/{c}", late)
    async with TestClient(TestServer(site)) as client:
        resp = await client.get("/late/x")
        assert (resp.status, await resp.text()) == (200, "late x")
        # A route aiosite did not mount: the core runs as the outer middleware.
        assert "X-Request-ID" in resp.headers
        missing = await client.get("/no/such/page/here", headers={"Accept": "text/html"})
        assert missing.status == 404
        assert "site 404" in await missing.text()


CLONING_SITE = """
    from aiohttp import web


    @web.middleware
    async def real_address(request, handler):
        # What a proxy-address middleware does: the handler gets a clone.
        return await handler(request.clone(remote="203.0.113.7"))


    middlewares = [real_address]
"""

CLONED_ROUTES = """
    from aiohttp import web
    from sqlalchemy import func, select

    from aiosite import Routes, db_session, get_session, json_response

    from PKG.notes.models import Note

    routes = Routes()


    @routes.get("/visit", name="visit")
    async def visit(request: web.Request) -> web.Response:
        session = await get_session(request)
        session["visits"] = session.get("visits", 0) + 1
        db = db_session(request)
        db.add(Note(text=request.remote or "?"))
        await db.flush()
        notes = await db.scalar(select(func.count()).select_from(Note))
        return json_response({"visits": session["visits"], "notes": notes})
"""


@pytest.mark.db_backends("sqlite")
async def test_a_middleware_that_clones_the_request_keeps_sessions_and_commits(
    make_project: ProjectFactory, database: TestDatabase
) -> None:
    files = {
        "PKG/notes/__init__.py": 'from aiosite import App\napp = App("notes", prefix="")\n',
        "PKG/notes/models.py": NOTES_MODELS,
        "PKG/notes/routes.py": CLONED_ROUTES,
        "PKG/site.py": CLONING_SITE,
    }
    root = make_project(files, apps=["notes"], with_home=False)
    async with site_with_tables(root) as client:
        first = await (await client.get("/visit")).json()
        second = await (await client.get("/visit")).json()
        # The session the handler changed on the clone was saved; the rows it wrote on the
        # clone's database session were committed, and its connection given back.
        assert first == {"visits": 1, "notes": 1}
        assert second == {"visits": 2, "notes": 2}
        assert database_of(client.app).engine.sync_engine.pool.checkedout() == 0


# --- one request path in development and production ----------------------------------

DEBUG_AIDS = "debug:\n  enabled: true\n  toolbar: true\n  detect_blocking: true\n"


@pytest.mark.parametrize("env", ["production", "development"])
async def test_the_debug_aids_leave_the_core_path_as_in_production(
    make_project: ProjectFactory, env: str
) -> None:
    # The same site, once with the toolbar and the block detector (development) and once
    # without any debug aid (production): one core path, wrapped handlers, no middleware.
    root = make_project(FILES, apps=["home", "api"], env_yaml={"development": DEBUG_AIDS})
    async with site_client(root, env) as client:
        site = client.app
        assert (BLOCK_DETECTOR in site) is (env == "development")
        toolbar_routes = [r for r in site.router.routes() if (r.name or "").startswith("debug")]
        assert bool(toolbar_routes) is (env == "development")
        assert list(site.middlewares) == []
        assert site[CORE].outer is False
        # Every route runs through the core's wrapper: the site's, the static files', the
        # fallback and the toolbar's own pages.
        for resource in site.router.resources():
            for route in resource:
                assert route.handler in site[CORE]._wrapped, resource
        resp = await client.get("/info/state")
        body = await resp.json()
        assert body["middlewares"] == 0
        assert body["request_id"] == resp.headers["X-Request-ID"]
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        missing = await client.get("/no/such/page", headers={"Accept": "text/html"})
        assert missing.status == 404
        assert "site 404 for /no/such/page" in await missing.text()
        if env == "development":
            panel = await client.get("/_debugtoolbar")
            assert panel.status == 200
            assert panel.headers["X-Request-ID"]
