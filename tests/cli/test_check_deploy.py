"""``aiosite check --deploy`` on a project made by ``aiosite new``, run in-process.

The project is written once for the module. A test that needs other settings writes
them as an environment of its own (config/<env>.yaml, with the project's default.yaml
below it); any environment but development and test is a public one.
"""

from __future__ import annotations

import importlib
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from aiosite.scaffold import create_project
from tests.cli_runner import Result, aiosite_process, invoke

NAME = "deploysite"
GOOD_KEY = "k7Qd-2vR9xLm4TzPw8sNc1bYh6JfUe3AoGi5KjHq0Vr"
# What a public site sets besides its secret key, which comes from the environment.
GOOD_PRODUCTION: dict[str, Any] = {
    "security": {"allowed_hosts": ["example.com", "www.example.com"], "trust_proxy_headers": True},
    "database": {"url": "postgresql://site:password@db.internal:5432/site"},
    "server": {"access_log": True},
}

Check = Callable[..., Result]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = create_project(NAME, tmp_path_factory.mktemp("deploy") / NAME)
    # As a release does before it checks: public sites serve the collected static files.
    collected = aiosite_process(root, "collectstatic", "--quiet")
    assert collected.returncode == 0, collected.stderr
    path_before = list(sys.path)
    yield root
    sys.path[:] = path_before
    for name in [n for n in sys.modules if n == NAME or n.startswith(NAME + ".")]:
        del sys.modules[name]
    importlib.invalidate_caches()


@pytest.fixture
def check(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Check:
    """``check(env, *flags, key=None)``: ``aiosite --env ENV check FLAGS`` on the project
    (no --env for None), with ``key`` (if any) as AIOSITE_SECURITY__SECRET_KEY and no
    other AIOSITE_ variable than those the test sets."""
    for name in list(os.environ):
        if name.startswith("AIOSITE_"):
            monkeypatch.delenv(name)

    def run(env: str | None, *flags: str, key: str | None = None) -> Result:
        if key is None:
            monkeypatch.delenv("AIOSITE_SECURITY__SECRET_KEY", raising=False)
        else:
            monkeypatch.setenv("AIOSITE_SECURITY__SECRET_KEY", key)
        chosen = ["--env", env] if env is not None else []
        return invoke(capsys, ["--project", str(project), *chosen, "check", *flags])

    return run


def write_env(project: Path, settings: dict[str, Any]) -> str:
    """A new public environment holding ``settings``; its name."""
    env = f"live{uuid.uuid4().hex[:8]}"
    (project / "config" / f"{env}.yaml").write_text(yaml.safe_dump(settings))
    return env


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = {key: dict(value) if isinstance(value, dict) else value for key, value in base.items()}
    for section, values in extra.items():
        out[section] = {**out.get(section, {}), **values}
    return out


def lines(result: Result, level: str) -> list[str]:
    return [line for line in result.out.splitlines() if line.startswith(f"{level}: ")]


def test_new_project_development_settings_fail_with_what_to_fix(check: Check) -> None:
    result = check("development", "--deploy")
    assert result.code == 1, result
    assert result.out.startswith("note: these are the 'development' settings; check the ones")
    errors = lines(result, "error")
    assert [line.split(":")[1].strip() for line in errors] == [
        "debug.enabled",
        "security.secret_key",
        "security.allowed_hosts",
        "session.cookie_secure",
    ]
    assert "set debug: false in config/development.yaml" in errors[0]
    assert "a development key (aiosite-insecure-...)" in errors[1]
    assert "AIOSITE_SECURITY__SECRET_KEY" in errors[1]
    assert "only local names (localhost, 127.0.0.1, [::1])" in errors[2]
    assert "null, which is off in the 'development' environment" in errors[3]
    assert any(
        line.startswith("warning: database.url: SQLite") for line in lines(result, "warning")
    )
    assert result.out.rstrip().endswith(f"4 error(s), {len(lines(result, 'warning'))} warning(s)")


def test_without_deploy_check_stays_as_it_was(check: Check) -> None:
    result = check("development")
    assert (result.code, result.out.strip()) == (0, "no problems found")


def test_new_project_production_settings_name_the_missing_key_once(check: Check) -> None:
    result = check("production", "--deploy")
    assert result.code == 1, result
    assert "note:" not in result.out
    errors = lines(result, "error")
    # The site also refuses to build without the key; that is the same problem, shown once.
    assert [line.split(":")[1].strip() for line in errors] == [
        "security.secret_key",
        "security.allowed_hosts",
    ]
    assert errors[0].startswith("error: security.secret_key: missing; set it in ")
    assert "list its host names in config/production.yaml" in errors[1]


def test_correct_production_settings_pass(check: Check, project: Path) -> None:
    env = write_env(project, GOOD_PRODUCTION)
    result = check(env, "--deploy", key=GOOD_KEY)
    assert (result.code, result.out.strip()) == (0, "no problems found"), result


def test_the_environment_comes_from_aiosite_env_too(
    check: Check, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIOSITE_ENV", write_env(project, GOOD_PRODUCTION))
    result = check(None, "--deploy", key=GOOD_KEY)
    assert (result.code, result.out.strip()) == (0, "no problems found"), result
    monkeypatch.setenv("AIOSITE_ENV", "production")
    assert check(None, "--deploy", key=GOOD_KEY).code == 1  # its allowed_hosts


def test_production_refuses_to_build_without_its_own_key(check: Check) -> None:
    refused = check("production")
    assert refused.code == 1
    assert (
        "error: security.secret_key: missing; set it in AIOSITE_SECURITY__SECRET_KEY" in refused.out
    )
    assert "the 'production' environment refuses to start" in refused.out
    started = check("production", key=GOOD_KEY)
    assert (started.code, started.out.strip()) == (0, "no problems found"), started


@pytest.mark.parametrize(
    ("settings", "key", "expected"),
    [
        ({"debug": {"enabled": True}}, GOOD_KEY, "debug.enabled: on"),
        ({}, "short-key", "security.secret_key: too weak"),
        ({}, "a" * 40, "security.secret_key: too weak"),
        ({}, "aiosite-insecure-" + GOOD_KEY, "security.secret_key: a development key"),
        (
            {"security": {"secret_key_fallbacks": ["aiosite-insecure-" + GOOD_KEY]}},
            GOOD_KEY,
            "security.secret_key_fallbacks: item 0 is a development key",
        ),
        ({"security": {"allowed_hosts": []}}, GOOD_KEY, "security.allowed_hosts: empty"),
        (
            {"security": {"allowed_hosts": ["example.com", "*"]}},
            GOOD_KEY,
            'security.allowed_hosts: "*" accepts any Host header',
        ),
        (
            {"security": {"allowed_hosts": ["localhost", "app.localhost", "127.0.0.2"]}},
            GOOD_KEY,
            "security.allowed_hosts: only local names",
        ),
        (
            {"session": {"cookie_secure": False}},
            GOOD_KEY,
            "session.cookie_secure: false, so the session cookie would also travel",
        ),
        (
            {"uploads": {"media_root": f"{NAME}/static/uploads"}},
            GOOD_KEY,
            f"uploads.media_root: {NAME}/static/uploads is inside the static folder "
            f"{NAME}/static, so an uploaded file could be served to anyone",
        ),
        (
            {"uploads": {"media_root": f"{NAME}/home/templates"}},
            GOOD_KEY,
            f"uploads.media_root: {NAME}/home/templates is inside the templates folder",
        ),
    ],
    ids=[
        "debug",
        "short-key",
        "one-letter-key",
        "development-key",
        "development-fallback",
        "no-hosts",
        "any-host",
        "local-hosts",
        "insecure-cookie",
        "media-in-static",
        "media-in-templates",
    ],
)
def test_each_error(
    check: Check, project: Path, settings: dict[str, Any], key: str, expected: str
) -> None:
    result = check(write_env(project, merged(GOOD_PRODUCTION, settings)), "--deploy", key=key)
    assert result.code == 1, result
    errors = lines(result, "error")
    assert len(errors) == 1, result.out
    assert errors[0].startswith(f"error: {expected}"), errors[0]
    assert lines(result, "warning") == []


def test_plain_check_reports_a_media_root_the_site_refuses(check: Check, project: Path) -> None:
    # Not a deployment check: the site refuses to start with it in every environment.
    media = {"uploads": {"media_root": f"{NAME}/static/uploads"}}
    result = check(write_env(project, merged(GOOD_PRODUCTION, media)), key=GOOD_KEY)
    assert result.code == 1, result
    errors = lines(result, "error")
    assert len(errors) == 1, result.out
    assert errors[0].startswith(f"error: uploads.media_root: {NAME}/static/uploads is inside")


def test_samesite_none_needs_a_secure_cookie(check: Check, project: Path) -> None:
    insecure = {"session": {"cookie_samesite": "None", "cookie_secure": False}}
    result = check(write_env(project, merged(GOOD_PRODUCTION, insecure)), "--deploy", key=GOOD_KEY)
    assert result.code == 1
    errors = lines(result, "error")
    assert len(errors) == 2, result.out
    assert errors[0].startswith("error: session.cookie_secure: false")
    assert errors[1].startswith("error: session.cookie_samesite: None without a Secure cookie")
    secure = {"session": {"cookie_samesite": "None"}}  # null: Secure outside development
    result = check(write_env(project, merged(GOOD_PRODUCTION, secure)), "--deploy", key=GOOD_KEY)
    assert (result.code, result.out.strip()) == (0, "no problems found"), result


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"security": {"hsts_seconds": 0}}, ["security.hsts_seconds: 0"]),
        (
            {"security": {"content_security_policy": ""}},
            ["security.content_security_policy: empty"],
        ),
        (
            {"security": {"content_security_policy": None, "frame_options": None}},
            [
                "security.content_security_policy: empty",
                "security.frame_options: null and the content security policy has no "
                "frame-ancestors",
            ],
        ),
        # The default policy's frame-ancestors 'none' does what X-Frame-Options would.
        ({"security": {"frame_options": None}}, []),
        (
            {"security": {"trust_proxy_headers": False}},
            ["security.trust_proxy_headers: false while server.host is 127.0.0.1"],
        ),
        # Listening on every interface, the site may well be reached directly.
        ({"security": {"trust_proxy_headers": False}, "server": {"host": "0.0.0.0"}}, []),  # noqa: S104
        (
            {"security": {"trusted_proxies": ["0.0.0.0/0", "::/0"]}},
            ["security.trusted_proxies: 0.0.0.0/0, ::/0 trusts every address"],
        ),
        ({"security": {"trusted_proxies": ["10.0.0.0/8", "fd00::/8"]}}, []),
        (
            {"database": {"url": "sqlite:///var/live.sqlite3"}},
            ["database.url: SQLite (sqlite+aiosqlite:///var/live.sqlite3)"],
        ),
        ({"database": {"echo": True}}, ["database.echo: on"]),
        ({"server": {"access_log": False}}, ["server.access_log: off"]),
        (
            {"auth": {"hasher": {"time_cost": 1, "memory_cost": 8, "parallelism": 1}}},
            ["auth.hasher: time_cost 1 with memory_cost 8 KiB is below OWASP's minimum"],
        ),
        ({"auth": {"hasher": {"time_cost": 2, "memory_cost": 19456}}}, []),
    ],
    ids=[
        "no-hsts",
        "empty-csp",
        "no-frame-protection",
        "csp-frame-ancestors",
        "proxy-headers",
        "public-host",
        "trust-everyone",
        "trust-private-network",
        "sqlite",
        "echo",
        "no-access-log",
        "weak-hasher",
        "owasp-hasher",
    ],
)
def test_each_warning(
    check: Check, project: Path, settings: dict[str, Any], expected: list[str]
) -> None:
    result = check(write_env(project, merged(GOOD_PRODUCTION, settings)), "--deploy", key=GOOD_KEY)
    assert result.code == 0, result  # warnings alone do not fail
    warnings = lines(result, "warning")
    assert len(warnings) == len(expected), result.out
    for line, start in zip(warnings, expected, strict=True):
        assert line.startswith(f"warning: {start}"), line
    assert lines(result, "error") == []
    if expected:
        assert result.out.rstrip().endswith(f"no errors ({len(expected)} warning(s))")


def test_a_secret_key_is_never_printed(check: Check, project: Path) -> None:
    weak = "tiny-secret"
    development = f"aiosite-insecure-{GOOD_KEY}"
    env = write_env(
        project, merged(GOOD_PRODUCTION, {"security": {"secret_key_fallbacks": [development]}})
    )
    result = check(env, "--deploy", key=weak)
    assert result.code == 1
    assert len(lines(result, "error")) == 2, result.out
    assert weak not in result.out
    assert GOOD_KEY not in result.out
