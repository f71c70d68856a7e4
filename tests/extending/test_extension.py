"""An extension built outside aiosite, on its public API only (tests/extending/maintenance,
the example of docs/extending.md): each of its parts works through HTTP and the CLI."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from aiosite import ImproperlyConfigured, load_settings
from tests.cli_runner import invoke
from tests.conftest import DEFAULT_YAML, ProjectFactory, site_client

Client = TestClient[web.Request, web.Application]
EXTENSION = Path(__file__).parent / "maintenance"
SETTINGS = """
maintenance:
  message: Back at noon.
  retry_after: 30
  poll_seconds: 0.05
"""


def project_with_extension(make_project: ProjectFactory, settings: str = SETTINGS) -> Path:
    root = make_project()
    package = root.name
    apps = f"  - {package}.home\n  - tests.extending.maintenance"
    config = DEFAULT_YAML.format(package=package, apps=apps) + settings
    (root / "config" / "default.yaml").write_text(config)
    return root


async def wait_for(client: Client, on: bool) -> None:
    for _ in range(100):
        if (await (await client.get("/maintenance/status")).json())["on"] is on:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"maintenance never became {on}")


def test_the_extension_uses_only_the_public_api() -> None:
    for path in EXTENSION.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.startswith("aiosite"):
                    assert node.module == "aiosite", f"{path.name} imports {node.module}"
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("aiosite") for a in node.names), path.name


async def test_maintenance_mode_through_http_and_the_cli(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = project_with_extension(make_project)
    async with site_client(root) as client:
        # Startup work ran: the watcher is going. Nothing is refused yet.
        assert await (await client.get("/maintenance/status")).json() == {
            "on": False,
            "watching": True,
        }
        resp = await client.get("/")
        assert resp.status == 200
        assert "X-Maintenance" not in resp.headers
        page = await client.get("/maintenance/")
        assert await page.text() == "<p>Test Site is open</p>"

        # The CLI command, run as `aiosite --project ROOT maintenance on`.
        result = invoke(capsys, ["--project", str(root), "maintenance", "on"])
        assert (result.code, result.out.strip()) == (0, "maintenance: on")
        await wait_for(client, True)

        # The request hook refuses, the exception handler answers with the site's 503
        # page, and the response hook marks the answer.
        resp = await client.get("/")
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "30"
        assert resp.headers["X-Maintenance"] == "on"
        assert resp.headers["X-Request-ID"]
        assert "Back at noon." in await resp.text()
        api = await client.get("/hello.json", headers={"Accept": "application/json"})
        assert (await api.json())["error"]["message"] == "Back at noon."
        # The hook runs after the host check and before the CSRF check, as its names say.
        forged = await client.get("/", headers={"Host": "evil.example"})
        assert forged.status == 400
        assert (await client.post("/")).status == 503  # no CSRF token: not a 403
        # Allowed paths are served, with the template helpers.
        assert (await client.get("/static/home/site.css")).status == 200
        page = await client.get("/maintenance/")
        assert await page.text() == "<p>Test Site is under maintenance (banner)</p>"

        result = invoke(capsys, ["--project", str(root), "maintenance", "status"])
        assert result.out.strip() == "maintenance: on"
        result = invoke(capsys, ["--project", str(root), "maintenance", "off"])
        assert (result.code, result.out.strip()) == (0, "maintenance: off")
        await wait_for(client, False)
        assert (await client.get("/")).status == 200
        state = client.app
    # Cleanup work ran when the site stopped: the watcher was cancelled.
    from tests.extending.maintenance.hooks import MAINTENANCE

    assert state[MAINTENANCE].watching is False


def test_the_section_is_typed_and_checked(make_project: ProjectFactory) -> None:
    root = project_with_extension(make_project)
    settings = load_settings(root, "test")
    from tests.extending.maintenance import MaintenanceSettings

    section = settings.section(MaintenanceSettings)
    assert (section.retry_after, section.message) == (30, "Back at noon.")
    assert section.allow_paths == ["/static/", "/maintenance/"]  # a default

    bad_type = project_with_extension(make_project, "maintenance:\n  retry_after: soon\n")
    with pytest.raises(ImproperlyConfigured) as info:
        load_settings(bad_type, "test")
    assert str(info.value).startswith("config/default.yaml: maintenance.retry_after: ")
    assert "\n" not in str(info.value)

    typo = project_with_extension(make_project, "maintenance:\n  mesage: Back soon.\n")
    with pytest.raises(ImproperlyConfigured) as info:
        load_settings(typo, "test")
    assert str(info.value) == (
        "config/default.yaml: maintenance.mesage: unknown setting; did you mean 'message'?"
    )


def test_the_section_is_overridden_from_the_environment(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project_with_extension(make_project)
    monkeypatch.setenv("AIOSITE_MAINTENANCE__RETRY_AFTER", "45")
    from tests.extending.maintenance import MaintenanceSettings

    assert load_settings(root, "test").section(MaintenanceSettings).retry_after == 45
    monkeypatch.setenv("AIOSITE_MAINTENANCE__RETRY_AFTER", "0")
    with pytest.raises(ImproperlyConfigured) as info:
        load_settings(root, "test")
    assert str(info.value).startswith(
        "environment variable AIOSITE_MAINTENANCE__RETRY_AFTER: maintenance.retry_after: "
    )


def test_deploy_checks_include_the_sections_problems(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = project_with_extension(make_project, "maintenance:\n  retry_after: 86400\n")
    result = invoke(capsys, ["--project", str(root), "--env", "production", "check", "--deploy"])
    assert "warning: maintenance.retry_after: 86400 s, so clients" in result.out
