"""``aiosite routes`` and ``aiosite check`` through the CLI entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiosite.cli import main
from tests.conftest import ProjectFactory


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
    assert ["GET", "/static/{path}", "static", "aiosite.web.static.StaticFiles.handle"] in lines
    assert not any(line[0] == "HEAD" for line in lines)


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
    assert "error: template home/broken.html:2: Expected an expression" in out
    assert "warning: app 'home': templates/ holds stray.html outside templates/home/" in out
    assert "1 error(s), 1 warning(s)" in out


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
