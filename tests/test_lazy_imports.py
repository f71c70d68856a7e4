"""What a process imports: ``import aiosite`` alone, and a site that does not use a battery.

A heavy library a site does not use costs every worker its memory and every start its
import time, so each is imported where it is first needed. Each check runs in a fresh
interpreter and reads ``sys.modules``: behaviour, not timing.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ProjectFactory

BLOG = Path(__file__).resolve().parents[1] / "examples" / "blog"

# Libraries only some sites or commands need.
OPTIONAL = (
    "redis",  # Redis sessions, rate limits or the broadcast hub
    "cryptography",  # the first session cookie read or written
    "limits",  # the first rate limit checked
    "aiohttp_debugtoolbar",  # debug mode
    "alembic",  # aiosite db ...
    "typer",  # the command line
    "click",
    "rich",
    "email_validator",
    "watchfiles",  # autoreload
    "filetype",  # the first upload checked
    "sqlalchemy.dialects.postgresql",  # a PostgreSQL database
)
# Besides those: what a site without auth, forms or uploads does not need.
UNUSED_BY_A_MINIMAL_SITE = ("argon2", "wtforms", "aiosite.contrib", "aiosite.forms")
# `import aiosite` alone imports none of aiosite's modules nor these.
FRAMEWORK = ("aiohttp", "sqlalchemy", "pydantic", "pydantic_settings", "jinja2", "yaml")


def imported(code: str, *, cwd: Path | None = None) -> set[str]:
    """The modules a fresh interpreter has after running ``code``."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOSITE_")}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    modules: list[str] = json.loads(done.stdout.splitlines()[-1])
    return set(modules)


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` (packages or modules) are among ``modules``."""
    return sorted(
        name for name in names if any(m == name or m.startswith(name + ".") for m in modules)
    )


def test_import_aiosite_imports_nothing_else() -> None:
    modules = imported("import aiosite")
    assert loaded(modules, (*FRAMEWORK, *OPTIONAL)) == []
    assert sorted(m for m in modules if m.startswith("aiosite.")) == []


def test_the_public_api_is_imported_on_first_use() -> None:
    modules = imported(
        "import aiosite\n"
        "assert aiosite.Routes.__module__ == 'aiosite.web.routing'\n"
        "from aiosite import render, session_scope\n"
        "assert set(aiosite.__all__) <= set(dir(aiosite))\n"
        "try:\n"
        "    from aiosite import no_such_name\n"
        "except ImportError:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('no_such_name imported')\n"
    )
    assert {"aiosite.web.routing", "aiosite.web.templates", "aiosite.db.transactions"} <= modules
    assert loaded(modules, ("aiosite.forms", "aiosite.contrib", *OPTIONAL)) == []


def test_every_name_of_the_public_api_imports() -> None:
    # A name is added in three places of aiosite/__init__.py: the imports type checkers
    # read, _EXPORTS (where it is imported from on first use) and __all__.
    import aiosite

    exported = set(aiosite.__all__) - {"__version__"}
    assert set(aiosite._EXPORTS) == exported
    tree = ast.parse(Path(aiosite.__file__).read_text())
    for_type_checkers = {
        alias.asname or alias.name: node.module
        for block in tree.body
        if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert for_type_checkers == aiosite._EXPORTS
    for name in sorted(exported):
        assert getattr(aiosite, name) is not None, name
        assert getattr(aiosite, name) is getattr(sys.modules[aiosite._EXPORTS[name]], name)


def test_a_minimal_site_imports_no_battery_it_does_not_use(
    make_project: ProjectFactory,
) -> None:
    root = make_project()
    modules = imported(f"from aiosite import load_site\nload_site({str(root)!r}, 'production')")
    assert loaded(modules, (*OPTIONAL, *UNUSED_BY_A_MINIMAL_SITE)) == []


@pytest.mark.parametrize("env", ["test", "production"])
def test_the_blog_site_imports_no_optional_library_it_does_not_use(
    env: str, tmp_path: Path
) -> None:
    # The blog has auth (argon2), forms (WTForms), uploads and cookie sessions; its
    # auth app's commands (Typer) are the command line's business, not the site's.
    # In production it serves the static files collected into static.root (here a
    # temporary folder), read from their manifest.
    static_root = {"AIOSITE_STATIC__ROOT": str(tmp_path)}
    if env == "production":
        aiosite = str(Path(sys.executable).with_name("aiosite"))
        collected = subprocess.run(
            [aiosite, "--project", str(BLOG), "--env", "production", "collectstatic", "-q"],
            env={k: v for k, v in os.environ.items() if not k.startswith("AIOSITE_")} | static_root,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert collected.returncode == 0, collected.stderr
    modules = imported(
        "import os\n"
        "os.environ['AIOSITE_SECURITY__SECRET_KEY'] = 'k' * 20 + 'abcdefghijklmnopqrstuvwxyz'\n"
        f"os.environ['AIOSITE_STATIC__ROOT'] = {str(tmp_path)!r}\n"
        f"from aiosite import load_site\nload_site({str(BLOG)!r}, {env!r})",
    )
    assert "blogsite.blog.models" in modules
    assert loaded(modules, OPTIONAL) == []


def test_the_command_line_imports_rich_and_alembic_only_for_commands_that_use_them() -> None:
    modules = imported("import aiosite.cli")
    assert loaded(modules, ("rich", "alembic", "aiosite.contrib")) == []
