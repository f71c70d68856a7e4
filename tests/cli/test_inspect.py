"""``aiosite routes`` and ``aiosite check`` through the CLI entry point."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aiosite.cli import main
from tests.cli_runner import invoke, one_line_error
from tests.conftest import HOME_ROUTES, ProjectFactory


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def test_routes_table(make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_project()
    code, out, _ = run_cli(capsys, "--project", str(root), "routes")
    assert code == 0
    lines = [line.split() for line in out.splitlines() if line.strip()]
    assert lines[0] == ["Method", "Path", "Name", "Handler"]
    assert ["GET", "/", "home:index", f"{root.name}.home.routes.index"] in lines
    assert ["GET", "/hello.json", "home:hello", f"{root.name}.home.routes.hello"] in lines
    assert ["GET", "/static/{path:.+}", "static", "aiosite.web.static.StaticFiles.handle"] in lines
    assert not any(line[0] == "HEAD" for line in lines)
    # The core's fallback (it answers what no route matches) is not a route of the site.
    assert not any(line[0] == "*" for line in lines)


def test_routes_hooks_shows_what_each_route_runs(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    posting = (
        HOME_ROUTES
        + """

@routes.post("/notes", name="notes")
async def notes(request: web.Request) -> web.Response:
    return web.Response(text="noted")
"""
    )
    root = make_project({"PKG/home/routes.py": posting})
    code, out, _ = run_cli(capsys, "--project", str(root), "routes", "--hooks")
    assert code == 0
    rows = out.split(f"{root.name}.home.routes.")
    by_handler = {row.split()[0]: " ".join(row.split()) for row in rows[1:]}
    # A GET route skips the CSRF check; a POST route runs it, after the session.
    assert "before: aiosite.allowed_hosts, aiosite.body_size," in by_handler["hello"]
    assert "aiosite.csrf" not in by_handler["hello"]
    assert "aiosite.sessions, aiosite.csrf" in by_handler["notes"]
    assert "after: aiosite.sessions, aiosite.security_headers" in by_handler["notes"]

    # With a middleware of the project's the core runs as one: every hook, every route.
    middleware = """
from aiohttp import web


@web.middleware
async def passing(request, handler):
    return await handler(request)


def setup(app, settings, registry):
    app.middlewares.append(passing)
"""
    root = make_project({"PKG/home/routes.py": posting, "PKG/site.py": middleware})
    code, out, _ = run_cli(capsys, "--project", str(root), "routes", "--hooks")
    rows = out.split(f"{root.name}.home.routes.")
    by_handler = {row.split()[0]: " ".join(row.split()) for row in rows[1:]}
    assert "aiosite.sessions, aiosite.csrf" in by_handler["hello"]


DOCS = Path(__file__).resolve().parents[2] / "docs"


def _between(text: str, start: str, end: str) -> str:
    return text[text.index(start) : text.index(end, text.index(start))]


def test_routes_prints_what_the_routing_docs_show(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    # The route tables of docs/routing.md, mounted as the blog app; the table the page
    # shows for them is what the command prints.
    page = (DOCS / "routing.md").read_text()
    examples = _between(page, "## Route tables", "## Names and prefixes")
    blog_routes = "\n".join(re.findall(r"```python\n(.*?)```", examples, re.DOTALL))
    home_views = """
        from aiohttp import web

        async def index(request: web.Request) -> web.Response:
            return web.Response(text="home")
    """
    home_routes = """
        from aiosite import Routes
        from PKG.home import views

        routes = Routes()
        routes.get("/", views.index, name="index")
    """
    root = make_project(
        {
            "PKG/home/views.py": home_views,
            "PKG/home/routes.py": home_routes,
            "PKG/blog/__init__.py": "",
            "PKG/blog/routes.py": blog_routes,
        },
        apps=["home", "blog"],
    )
    shown = _between(page, "$ aiosite --env test routes\n", "```\n\n")
    expected = [line.split() for line in shown.splitlines()[1:]]
    code, out, _ = run_cli(capsys, "--project", str(root), "--env", "test", "routes")
    assert code == 0
    printed = [line.split() for line in out.replace(root.name, "mysite").splitlines()]
    assert printed == expected
    assert ["GET", "/blog/tags/{tag}/{page:\\d+}", "blog:tag", "mysite.blog.routes.tag"] in printed


def test_routes_lists_routes_added_in_setup_and_sub_apps(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    site_hooks = """
        from aiohttp import web

        async def raw(request: web.Request) -> web.Response:
            return web.Response(text="raw")

        def setup(app: web.Application, settings: object, registry: object) -> None:
            app.router.add_post("/raw", raw, name="raw")
            sub = web.Application()
            sub.router.add_get("/inner", raw, name="inner")
            app.add_subapp("/sub", sub)
    """
    root = make_project({"PKG/site.py": site_hooks})
    code, out, _ = run_cli(capsys, "--project", str(root), "routes")
    assert code == 0
    lines = [line.split() for line in out.splitlines() if line.strip()]
    assert ["POST", "/raw", "raw", f"{root.name}.site.raw"] in lines
    assert ["GET", "/sub/inner", "inner", f"{root.name}.site.raw"] in lines


def test_check_passes_on_a_good_project(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_project()
    code, out, _ = run_cli(capsys, "--project", str(root), "check")
    assert (code, out.strip()) == (0, "no problems found")


def test_check_lists_problems(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {
        "PKG/home/templates/home/broken.html": "line one\n{% if %}\n",
        "PKG/home/templates/stray.html": "not namespaced",
    }
    root = make_project(files)
    code, out, _ = run_cli(capsys, "--project", str(root), "check")
    assert code == 1
    assert (
        f"error: template {root.name}/home/templates/home/broken.html:2: Expected an expression"
        in out
    )
    assert "warning: app 'home': templates/ holds stray.html outside templates/home/" in out
    assert "1 error(s), 1 warning(s)" in out


def test_check_reports_unknown_routes_and_static_files_in_templates(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    page = """\
        {% extends "base.html" %}
        {% block content %}
        <a href="{{ url('home:index') }}">home</a>
        <a href="{{ url('home:missing') }}">gone</a>
        <link href="{{ static('home/site.css') }}"><script src="{{ static('home/app.js') }}">
        {{ url('home:hello', **params) }} {{ url(name) }} {{ static(path) }}
        {% endblock %}
    """
    base = "{% block content %}{% endblock %}{{ url('nothing') }}\n"
    root = make_project(
        {"PKG/home/templates/home/page.html": page, "PKG/templates/base.html": base}
    )
    code, out, _ = run_cli(capsys, "--project", str(root), "check")
    assert code == 1
    lines = out.strip().splitlines()
    pkg = root.name
    assert lines == [
        f"error: template {pkg}/templates/base.html:1: url('nothing'): no route named "
        "'nothing'; route names have the form 'app:name'",
        f"error: template {pkg}/home/templates/home/page.html:4: url('home:missing'): no route "
        "named 'home:missing'; did you mean 'home:index'?",
        f"error: template {pkg}/home/templates/home/page.html:5: static('home/app.js'): no such "
        f"file in the static folders ({pkg}/home/static)",
        "3 error(s), 0 warning(s)",
    ]


def test_check_leaves_a_templates_own_url_and_static_alone(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    # Each template binds url or static itself, then calls it with what is no route or file.
    templates = {
        "set.html": "{% set url = make_url %}{{ url('nothing') }}",
        "macro.html": "{% macro link(url) %}{{ url('nothing') }}{% endmacro %}",
        "for.html": "{% for static in helpers %}{{ static('no/file.css') }}{% endfor %}",
        "import.html": "{% from 'home/lib.html' import url %}{{ url('nothing') }}",
        "lib.html": "{% macro url(name) %}/{{ name }}{% endmacro %}{{ url('nothing') }}",
        "checked.html": "{% set other = 1 %}{{ url('nothing') }}",
    }
    root = make_project({f"PKG/home/templates/home/{n}": t for n, t in templates.items()})
    code, out, _ = run_cli(capsys, "--project", str(root), "check")
    assert code == 1
    assert out.strip().splitlines() == [
        f"error: template {root.name}/home/templates/home/checked.html:1: url('nothing'): "
        "no route named 'nothing'; route names have the form 'app:name'",
        "1 error(s), 0 warning(s)",
    ]


def test_check_reports_a_route_call_missing_a_parameter(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    routes = HOME_ROUTES + '\n\n@routes.get("/{slug}", name="detail")\nasync def detail(r): ...\n'
    page = "{{ url('home:detail', slug='x') }}\n{{ url('home:detail', page=2) }}\n"
    root = make_project({"PKG/home/routes.py": routes, "PKG/home/templates/home/p.html": page})
    code, out, _ = run_cli(capsys, "--project", str(root), "check")
    assert code == 1
    assert out.strip().splitlines()[0] == (
        f"error: template {root.name}/home/templates/home/p.html:2: url('home:detail'): "
        "route 'home:detail' (/{slug}) needs slug; got page"
    )


def test_check_leaves_an_apps_own_url_helper_alone(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    init = 'from aiosite import App\napp = App("home", prefix="", template_globals={"url": str})\n'
    page = "{{ url('cdn:anything') }}"
    root = make_project({"PKG/home/__init__.py": init, "PKG/home/templates/home/p.html": page})
    code, out, _ = run_cli(capsys, "--project", str(root), "check")
    assert (code, out.strip()) == (0, "no problems found")


def test_check_suggests_a_misspelled_settings_key(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_project(env_yaml={"development": "sever:\n  port: 9000\n"})
    result = invoke(capsys, ["--project", str(root), "check"])
    one_line_error(
        result, "config/development.yaml: sever: unknown setting; did you mean 'server'?"
    )
    (root / "config" / "development.yaml").write_text("database:\n  ulr: sqlite://\n")
    result = invoke(capsys, ["--project", str(root), "check"])
    one_line_error(
        result, "config/development.yaml: database.ulr: unknown setting; did you mean 'url'?"
    )
    (root / "config" / "development.yaml").write_text("colour: red\n")
    result = invoke(capsys, ["--project", str(root), "check"])
    line = one_line_error(result, "config/development.yaml: colour: unknown setting")
    assert "did you mean" not in line


def test_check_reports_a_sync_handler(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    routes = """
        from aiosite import Routes
        routes = Routes()

        @routes.get("/", name="index")
        def index(request):
            return None
    """
    root = make_project({"PKG/home/routes.py": routes})
    code, out, _ = run_cli(capsys, "--project", str(root), "check")
    assert code == 1
    assert "error: app 'home': route GET /: handler index must be an `async def` function" in out


def test_check_reports_settings_and_app_errors(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_project(apps=["home", "missing"])
    code, out, _ = run_cli(capsys, "--project", str(root), "check")
    assert code == 1
    assert "error: apps: cannot import" in out
    (root / "config" / "development.yaml").write_text("server:\n  port: many\n")
    code, out, err = run_cli(capsys, "--project", str(root), "check")
    assert code == 2
    assert err.strip().startswith("error: config/development.yaml: server.port:")
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_commands_outside_a_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "routes")
    assert code == 2
    assert err.startswith("error: not inside an aiosite project")
    code, _, err = run_cli(capsys, "--project", str(tmp_path), "check")
    assert code == 2
    assert "is not an aiosite project" in err


def test_env_option_selects_settings(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_project(env_yaml={"production": "colour: red\n"})
    code, _, err = run_cli(capsys, "--project", str(root), "--env", "production", "routes")
    assert code == 2
    assert "config/production.yaml: colour: unknown setting" in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "no-such-command")
    assert code == 2
    assert "No such command" in err
