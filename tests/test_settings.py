"""Settings: YAML layers, environment overrides and errors that name file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiosite import ImproperlyConfigured, load_settings
from aiosite.settings import find_project_dir
from tests.conftest import ProjectFactory


def write(root: Path, name: str, text: str) -> None:
    (root / "config" / name).write_text(text)


def test_layers_later_wins(make_project: ProjectFactory) -> None:
    root = make_project()
    write(
        root,
        "default.yaml",
        (root / "config/default.yaml").read_text() + "server:\n  port: 8000\n  host: 0.0.0.0\n",
    )
    write(root, "production.yaml", "server:\n  port: 9000\n")
    settings = load_settings(root, "production")
    assert settings.server.port == 9000
    assert settings.server.host == "0.0.0.0"  # noqa: S104 - kept from default.yaml
    assert settings.env == "production"
    assert settings.project_dir == root.resolve()


def test_environment_variables_beat_yaml(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(env_yaml={"test": "server:\n  port: 7000\n"})
    monkeypatch.setenv("AIOSITE_SERVER__PORT", "9001")
    monkeypatch.setenv("AIOSITE_SITE__NAME", "From env")
    settings = load_settings(root, "test")
    assert settings.server.port == 9001
    assert settings.site.name == "From env"


def test_env_chosen_by_aiosite_env(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(env_yaml={"production": "site:\n  name: Prod\n"})
    monkeypatch.setenv("AIOSITE_ENV", "production")
    assert load_settings(root).site.name == "Prod"
    monkeypatch.delenv("AIOSITE_ENV")
    settings = load_settings(root)
    assert settings.env == "development"
    assert settings.debug.enabled  # development.yaml says `debug: true`


def test_debug_shorthand_and_section(make_project: ProjectFactory) -> None:
    root = make_project(env_yaml={"test": "debug:\n  enabled: true\n  block_threshold_ms: 50\n"})
    settings = load_settings(root, "test")
    assert settings.debug.enabled
    assert settings.debug.block_threshold_ms == 50


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        (
            "server:\n  port: abc\n",
            "config/test.yaml: server.port: Input should be a valid integer",
        ),
        ("server:\n  prot: 1\n", "config/test.yaml: server.prot: unknown setting"),
        ("colour: blue\n", "config/test.yaml: colour: unknown setting"),
        ("server: [1, 2]\n", "config/test.yaml: server:"),
        (
            "static:\n  url: assets\n",
            "config/test.yaml: static.url: must start with '/'",
        ),
        ("logging:\n  level: LOUD\n", "config/test.yaml: logging.level:"),
        ("- just\n- a list\n", "config/test.yaml: expected a mapping of settings"),
        ("server:\n  port: [\n", "config/test.yaml:3:1: invalid YAML"),
        ("site:\n  name: 2026-13-01\n", "config/test.yaml: invalid YAML: month must be in 1..12"),
    ],
)
def test_bad_yaml_names_file_and_key(
    make_project: ProjectFactory, yaml_text: str, expected: str
) -> None:
    root = make_project(env_yaml={"test": yaml_text})
    with pytest.raises(ImproperlyConfigured) as info:
        load_settings(root, "test")
    assert str(info.value).startswith(expected), str(info.value)
    assert "\n" not in str(info.value)


def test_bad_value_in_default_yaml_names_default_yaml(make_project: ProjectFactory) -> None:
    root = make_project()
    text = (root / "config/default.yaml").read_text() + "server:\n  port: 70000\n"
    write(root, "default.yaml", text)
    with pytest.raises(ImproperlyConfigured, match=r"^config/default.yaml: server.port: "):
        load_settings(root, "test")


def test_bad_environment_variable_is_named(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project()
    monkeypatch.setenv("AIOSITE_SERVER__PORT", "eighty")
    with pytest.raises(ImproperlyConfigured) as info:
        load_settings(root, "test")
    assert str(info.value).startswith("environment variable AIOSITE_SERVER__PORT: server.port:")
    monkeypatch.delenv("AIOSITE_SERVER__PORT")
    monkeypatch.setenv("AIOSITE_SERVER__PROT", "1")
    with pytest.raises(ImproperlyConfigured, match=r"AIOSITE_SERVER__PROT: server\.prot: unknown"):
        load_settings(root, "test")


def test_unrelated_aiosite_variables_are_ignored(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project()
    monkeypatch.setenv("AIOSITE_REQUIRE_SERVICES", "1")
    monkeypatch.setenv("AIOSITE_PROJECT", str(root))
    assert load_settings(root, "test").site.name == "Test Site"


def test_missing_files(make_project: ProjectFactory, tmp_path: Path) -> None:
    root = make_project()
    with pytest.raises(ImproperlyConfigured, match=r"^config/staging.yaml: settings file not"):
        load_settings(root, "staging")
    (root / "config/default.yaml").unlink()
    with pytest.raises(ImproperlyConfigured, match=r"^config/default.yaml: settings file not"):
        load_settings(root, "test")


def test_settings_are_immutable(make_project: ProjectFactory) -> None:
    settings = load_settings(make_project(), "test")
    with pytest.raises(ValueError, match="frozen"):
        settings.server.port = 1  # type: ignore[misc]


def test_find_project_dir(make_project: ProjectFactory, tmp_path: Path) -> None:
    root = make_project()
    nested = root / "a" / "b"
    nested.mkdir(parents=True)
    assert find_project_dir(nested) == root.resolve()
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    assert find_project_dir(empty) is None


def test_env_var_problems_name_the_variable(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project()
    monkeypatch.setenv("AIOSITE_APPS", "x.y")
    with pytest.raises(ImproperlyConfigured, match=r"^environment variable AIOSITE_APPS: apps: "):
        load_settings(root, "test")
    monkeypatch.delenv("AIOSITE_APPS")
    monkeypatch.setenv("AIOSITE_SEVER__PORT", "1")
    with pytest.raises(ImproperlyConfigured, match=r"AIOSITE_SEVER__PORT: sever: unknown settings"):
        load_settings(root, "test")


@pytest.mark.parametrize("fact", ["env", "project_dir"])
def test_facts_cannot_be_set_in_yaml(make_project: ProjectFactory, fact: str) -> None:
    root = make_project(env_yaml={"test": f"{fact}: somewhere\n"})
    with pytest.raises(ImproperlyConfigured, match=rf"^config/test.yaml: {fact}: not a setting"):
        load_settings(root, "test")


def test_database_defaults_to_sqlite_in_the_project(make_project: ProjectFactory) -> None:
    settings = load_settings(make_project(), "test")
    assert settings.database.url == "sqlite+aiosqlite:///var/db.sqlite3"
    assert settings.database.schema_name is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u@db.example/site", "postgresql+asyncpg://u@db.example/site"),
        ("postgresql://u@db.example/site", "postgresql+asyncpg://u@db.example/site"),
        ("sqlite:///var/other.sqlite3", "sqlite+aiosqlite:///var/other.sqlite3"),
        ("postgresql+asyncpg://u@h/d", "postgresql+asyncpg://u@h/d"),
    ],
)
def test_database_urls_get_their_async_driver(
    make_project: ProjectFactory, url: str, expected: str
) -> None:
    root = make_project(env_yaml={"test": f"database:\n  url: {url}\n"})
    assert load_settings(root, "test").database.url == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "mysql+nosuchdriver://u@h/d",
            "database.url: unknown database driver 'mysql+nosuchdriver'",
        ),
        ("oracle://u:pw@h/d", "database.url: the driver 'oracle' is not async"),
        (
            "postgresql+psycopg2://u:hunter22@h/d",
            "database.url: the driver 'postgresql+psycopg2' is not async; use "
            "sqlite+aiosqlite:// or postgresql+asyncpg:// "
            "(got 'postgresql+psycopg2://u:***@h/d')",
        ),
        ("var/db.sqlite3", "database.url: not a database URL"),
        (
            "postgresql://u:hunter22@h:port/d",
            "database.url: cannot parse the database URL",
        ),
    ],
)
def test_a_bad_database_url_names_the_file_and_key(
    make_project: ProjectFactory, url: str, expected: str
) -> None:
    root = make_project(env_yaml={"test": f"database:\n  url: {url}\n"})
    with pytest.raises(ImproperlyConfigured) as info:
        load_settings(root, "test")
    assert str(info.value).startswith(f"config/test.yaml: {expected}")
    assert "hunter22" not in str(info.value)


def test_a_bad_database_url_from_the_environment_names_the_variable(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIOSITE_DATABASE__URL", "nosuch://x")
    with pytest.raises(ImproperlyConfigured) as info:
        load_settings(make_project(), "test")
    assert str(info.value).startswith(
        "environment variable AIOSITE_DATABASE__URL: database.url: unknown database driver"
    )


def test_schema_names_are_lower_case(make_project: ProjectFactory) -> None:
    yaml_text = "database:\n  url: postgresql://u@h/d\n  schema_name: MySite\n"
    root = make_project(env_yaml={"test": yaml_text})
    with pytest.raises(ImproperlyConfigured, match=r"config/test.yaml: database.schema_name"):
        load_settings(root, "test")


def test_schema_name_is_for_postgresql_only(make_project: ProjectFactory) -> None:
    root = make_project(env_yaml={"test": "database:\n  schema_name: site\n"})
    with pytest.raises(ImproperlyConfigured, match="schema_name is a PostgreSQL setting"):
        load_settings(root, "test")


def test_the_database_password_stays_out_of_the_settings_repr(
    make_project: ProjectFactory,
) -> None:
    root = make_project(env_yaml={"test": "database:\n  url: postgresql://u:hunter22@h/d\n"})
    settings = load_settings(root, "test")
    assert "hunter22" not in repr(settings)
    assert "postgresql+asyncpg://u:***@h/d" in repr(settings)
