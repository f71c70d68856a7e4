"""``aiosite new`` and ``aiosite startapp``, run in-process through ``aiosite.cli.main``."""

from __future__ import annotations

import datetime
import importlib
import re
import sys
import textwrap
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from aiosite import CommandError, ImproperlyConfigured, load_settings, load_site
from aiosite.ratelimit import RateLimitSettings
from aiosite.scaffold import add_app
from aiosite.sessions import SessionSettings
from aiosite.settings import INSECURE_KEY_PREFIX, RedisSettings, SecuritySettings
from aiosite.uploads import UploadSettings
from tests.cli_runner import Result, invoke, one_line_error

Run = Callable[..., Result]


@pytest.fixture
def run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Run]:
    """Run the CLI in ``cwd`` (default tmp_path); forget the generated packages afterwards,
    since the next test may generate a package of the same name."""
    monkeypatch.delenv("AIOSITE_ENV", raising=False)
    monkeypatch.delenv("AIOSITE_PROJECT", raising=False)
    path_before = list(sys.path)

    def run(*args: str, cwd: Path | None = None) -> Result:
        monkeypatch.chdir(cwd or tmp_path)
        return invoke(capsys, list(args))

    yield run
    sys.path[:] = path_before
    for name, module in list(sys.modules.items()):
        where = getattr(module, "__file__", None) or ""
        if where.startswith(str(tmp_path)):
            del sys.modules[name]
    importlib.invalidate_caches()


@pytest.fixture
def project(run: Run, tmp_path: Path) -> Path:
    result = run("new", "mysite")
    assert result.code == 0, result.err
    return tmp_path / "mysite"


PROJECT_FILES = [
    "pyproject.toml",
    "README.md",
    ".gitignore",
    "config/default.yaml",
    "config/development.yaml",
    "config/test.yaml",
    "config/production.yaml",
    "mysite/__init__.py",
    "mysite/__main__.py",
    "mysite/site.py",
    "mysite/templates/base.html",
    "mysite/templates/404.html",
    "mysite/templates/500.html",
    "mysite/static/site.css",
    "mysite/home/__init__.py",
    "mysite/home/routes.py",
    "mysite/home/views.py",
    "mysite/home/templates/home/index.html",
    "mysite/home/static/home/home.css",
    "tests/conftest.py",
    "tests/test_home.py",
    "migrations/env.py",
    "migrations/script.py.mako",
    "migrations/versions/.gitkeep",
]


def test_new_writes_the_project(project: Path, run: Run) -> None:
    written = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file())
    assert written == sorted(PROJECT_FILES)
    for relative in PROJECT_FILES:
        text = (project / relative).read_text()
        assert "@@" not in text, relative
    assert not list(project.rglob("*.tmpl"))
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert any(dep.startswith("aiosite") for dep in pyproject["project"]["dependencies"])
    assert pyproject["tool"]["pytest"]["ini_options"] == {
        "asyncio_mode": "auto",
        "asyncio_default_fixture_loop_scope": "function",
        "pythonpath": ["."],
        "testpaths": ["tests"],
    }
    default = (project / "config/default.yaml").read_text()
    assert yaml.safe_load(default)["apps"] == ["mysite.home"]
    assert default.count("\n# ") + default.count("\n  # ") >= 15  # commented for the user


def test_new_settings_per_environment(project: Path) -> None:
    development = load_settings(project, "development")
    assert development.site.package == "mysite"
    assert development.site.name == "Mysite"
    assert development.debug.enabled
    assert development.debug.toolbar
    assert development.debug.detect_blocking
    assert development.server.reload
    assert development.server.access_log
    test = load_settings(project, "test")
    assert not test.debug.enabled
    assert test.debug.detect_blocking
    assert not test.server.reload
    assert test.auth.hasher.time_cost == 1  # fast password hashing in the tests
    assert test.auth.hasher.memory_cost == 8
    production = load_settings(project, "production")
    assert not production.debug.enabled
    assert production.logging.format == "json"
    assert production.server.host == "127.0.0.1"  # 0.0.0.0 is a comment to opt into
    assert "# host: 0.0.0.0" in (project / "config/production.yaml").read_text()


def test_new_writes_fresh_development_keys(run: Run, tmp_path: Path) -> None:
    assert run("new", "othersite").code == 0
    keys = []
    for root in (tmp_path / "mysite", tmp_path / "othersite"):
        if not root.exists():
            assert run("new", root.name).code == 0
        for env in ("development", "test"):
            key = load_settings(root, env).security.secret_key
            assert key is not None
            keys.append(key.get_secret_value())
        production = yaml.safe_load((root / "config/production.yaml").read_text())
        assert "secret_key" not in production.get("security", {})
    assert len(set(keys)) == 4, keys
    for key in keys:
        assert key.startswith(INSECURE_KEY_PREFIX)
        assert len(key) >= len(INSECURE_KEY_PREFIX) + 50


def test_new_documents_the_security_sections_with_the_defaults(project: Path) -> None:
    default = yaml.safe_load((project / "config/default.yaml").read_text())
    for section, model in (
        ("security", SecuritySettings),
        ("session", SessionSettings),
        ("redis", RedisSettings),
        ("ratelimit", RateLimitSettings),
        ("uploads", UploadSettings),
    ):
        assert model(**default[section]) == model(), section
    assert set(default["security"]) >= {"allowed_hosts", "content_security_policy", "hsts_seconds"}
    assert "aiosite.contrib.auth" in (project / "config/default.yaml").read_text()
    assert "aiosite.contrib.auth" not in default["apps"]  # mentioned, not enabled


async def test_new_production_needs_a_secret_key_of_its_own(
    project: Path, monkeypatch: pytest.MonkeyPatch, run: Run
) -> None:
    monkeypatch.delenv("AIOSITE_SECURITY__SECRET_KEY", raising=False)
    with pytest.raises(ImproperlyConfigured, match="AIOSITE_SECURITY__SECRET_KEY"):
        load_site(project, "production")
    # The development key will not do either.
    development = load_settings(project, "development").security.secret_key
    assert development is not None
    monkeypatch.setenv("AIOSITE_SECURITY__SECRET_KEY", development.get_secret_value())
    with pytest.raises(ImproperlyConfigured, match="a development key"):
        load_site(project, "production")
    monkeypatch.setenv("AIOSITE_SECURITY__SECRET_KEY", "Zq3-" + "x8Rk2mPw" * 6)
    # A public site serves the static files `aiosite collectstatic` gathered.
    with pytest.raises(ImproperlyConfigured, match="aiosite collectstatic"):
        load_site(project, "production")
    assert run("collectstatic", "--quiet", cwd=project).code == 0
    async with TestClient(TestServer(load_site(project, "production"))) as client:
        resp = await client.get("/")
        assert resp.status == 200
        assert "Welcome to Mysite" in await resp.text()


async def test_base_template_shows_flash_messages_once(project: Path) -> None:
    routes = project / "mysite/home/routes.py"
    routes.write_text(
        routes.read_text()
        + textwrap.dedent(
            """
            from aiohttp import web
            from aiosite.sessions import flash


            async def saved(request: web.Request) -> web.Response:
                await flash(request, "Saved <it>.", "success")
                raise web.HTTPSeeOther("/")


            routes.get("/saved", saved, name="saved")
            """
        )
    )
    async with TestClient(TestServer(load_site(project, "test"))) as client:
        first = await client.get("/")
        assert 'class="flashes"' not in await first.text()
        # A visitor who was told nothing gets no session (base.html makes no CSRF token).
        assert "Set-Cookie" not in first.headers
        body = await (await client.get("/saved")).text()  # followed to /
        assert '<p class="flash flash-success">Saved &lt;it&gt;.</p>' in body
        again = await (await client.get("/")).text()
        assert "Saved" not in again


def test_new_prints_next_steps(run: Run, tmp_path: Path) -> None:
    result = run("new", "blogsite")
    assert result.code == 0
    assert (tmp_path / "blogsite" / "blogsite" / "__main__.py").is_file()
    assert "cd blogsite" in result.out
    assert "aiosite run" in result.out
    assert "python -m pytest" in result.out


def test_new_into_the_current_empty_directory(run: Run, tmp_path: Path) -> None:
    here = tmp_path / "here"
    here.mkdir()
    result = run("new", "mysite", ".", cwd=here)
    assert result.code == 0, result.err
    assert (here / "mysite" / "home" / "routes.py").is_file()
    assert "cd " not in result.out


async def test_generated_project_serves_its_pages(project: Path) -> None:
    async with TestClient(TestServer(load_site(project, "test"))) as client:
        resp = await client.get("/")
        assert resp.status == 200
        body = await resp.text()
        assert "Welcome to Mysite" in body
        assert '<a href="/">Home</a>' in body
        assert 'href="/static/home/home.css"' in body
        assert f"&copy; {datetime.date.today().year} Mysite" in body
        for path in ("/static/site.css", "/static/home/home.css"):
            resp = await client.get(path)
            assert resp.status == 200
            assert resp.content_type == "text/css"
        resp = await client.get("/no/such/page")
        assert resp.status == 404
        body = await resp.text()
        assert "Page not found" in body
        assert "<code>/no/such/page</code>" in body
        assert 'href="/static/site.css"' in body  # 404.html extends base.html


async def test_generated_pages_survive_removing_the_home_app(
    project: Path, run: Run, caplog: pytest.LogCaptureFixture
) -> None:
    # base.html, 404.html and 500.html link to the site root, not to a route of the home
    # app, so the error pages keep working whatever apps the site lists.
    assert run("startapp", "blog", cwd=project).code == 0
    default = project / "config" / "default.yaml"
    default.write_text(default.read_text().replace("  - mysite.home\n", ""))
    routes = project / "mysite" / "blog" / "routes.py"
    routes.write_text(
        routes.read_text()
        + textwrap.dedent(
            """
            from aiohttp import web


            async def broken(request: web.Request) -> web.Response:
                raise RuntimeError("boom")


            routes.get("/broken", broken, name="broken")
            """
        )
    )
    assert load_settings(project, "test").apps == ["mysite.blog"]
    async with TestClient(TestServer(load_site(project, "test"))) as client:
        page = await client.get("/blog/")
        assert page.status == 200
        assert '<a class="brand" href="/">Mysite</a>' in await page.text()
        missing = await client.get("/no/such/page")
        assert missing.status == 404
        body = await missing.text()
        assert "Page not found" in body
        assert '<a class="button" href="/">Go to the home page</a>' in body
        failed = await client.get("/blog/broken")
        assert failed.status == 500
        body = await failed.text()
        assert "Something went wrong" in body
        assert '<a class="button" href="/">Go to the home page</a>' in body
    assert "NoReverseMatch" not in caplog.text
    result = run("--env", "test", "check", cwd=project)
    assert (result.code, result.out.strip()) == (0, "no problems found")


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("json", "existing Python module"),
        ("test", "existing Python module"),
        ("aiosite", "existing Python module"),
        ("class", "keyword"),
        ("1site", "not a valid project name"),
        ("my-site", "not a valid project name"),
        ("tests", "directory in every project"),
    ],
)
def test_new_rejects_bad_names(run: Run, tmp_path: Path, name: str, fragment: str) -> None:
    result = run("new", name)
    one_line_error(result, repr(name), fragment)
    assert list(tmp_path.iterdir()) == []


def test_new_refuses_a_non_empty_directory(run: Run, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    one_line_error(run("new", "mysite", "taken"), "taken already exists and is not empty")
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["keep.txt"]
    (tmp_path / "afile").write_text("")
    one_line_error(run("new", "mysite", "afile"), "is not a directory")


async def test_startapp_adds_an_app_that_serves(project: Path, run: Run) -> None:
    config = project / "config" / "default.yaml"
    before = config.read_text()
    result = run("startapp", "blog", cwd=project / "mysite")  # found from a subdirectory
    assert result.code == 0, result.err
    assert "mysite.blog" in result.out
    app_dir = project / "mysite" / "blog"
    for relative in (
        "__init__.py",
        "routes.py",
        "views.py",
        "models.py",
        "templates/blog/index.html",
        "static/blog/blog.css",
    ):
        assert (app_dir / relative).is_file(), relative
        assert "@@" not in (app_dir / relative).read_text()
    assert 'app = App("blog", prefix="/blog")' in (app_dir / "__init__.py").read_text()
    # One line added after the last entry; every comment kept.
    assert config.read_text() == before.replace(
        "  - mysite.home\n", "  - mysite.home\n  - mysite.blog\n"
    )
    assert yaml.safe_load(config.read_text())["apps"] == ["mysite.home", "mysite.blog"]

    routes = run("routes", cwd=project)
    assert routes.code == 0, routes.err
    line = next(line for line in routes.out.splitlines() if "blog:index" in line)
    assert "/blog/" in line
    assert "mysite.blog.views.index" in line

    async with TestClient(TestServer(load_site(project, "test"))) as client:
        resp = await client.get("/blog/")
        assert resp.status == 200
        body = await resp.text()
        assert "<h1>Blog</h1>" in body
        assert 'href="/static/blog/blog.css"' in body
        assert (await client.get("/static/blog/blog.css")).status == 200
    assert importlib.import_module("mysite.blog.models").__file__


@pytest.mark.parametrize(
    ("apps", "expected"),
    [
        ("apps: [mysite.home]  # the apps\n", "apps: [mysite.home, mysite.blog]  # the apps\n"),
        ("apps: []\n", "apps: [mysite.blog]\n"),
        ("apps:\n- mysite.home\n", "apps:\n- mysite.home\n- mysite.blog\n"),
        ("apps: [\n    mysite.home,\n]\n", "apps: [\n    mysite.home,\n    mysite.blog,\n]\n"),
        ("", "\napps:\n  - mysite.blog\n"),
    ],
    ids=["flow", "flow-empty", "block-unindented", "flow-multiline", "missing"],
)
def test_startapp_edits_every_style_of_apps_list(
    project: Path, run: Run, apps: str, expected: str
) -> None:
    config = project / "config" / "default.yaml"
    head = "# My settings.\nsite:\n  name: Mine  # shown in titles\n  package: mysite\n"
    tail = "\n# The server.\nserver:\n  port: 8080\n"
    config.write_text(head + apps + tail if apps else head)
    result = run("startapp", "blog", cwd=project)
    assert result.code == 0, result.err
    assert config.read_text() == (head + expected + tail if apps else head + expected)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("blog-posts", "not a valid app name"),
        ("import", "keyword"),
        ("static", "used by the project package"),
        ("home", "an app named 'home' is already listed"),
    ],
)
def test_startapp_rejects_bad_names(project: Path, run: Run, name: str, fragment: str) -> None:
    config = project / "config" / "default.yaml"
    before = config.read_text()
    one_line_error(run("startapp", name, cwd=project), fragment)
    assert config.read_text() == before


def test_startapp_refuses_an_existing_directory(project: Path, run: Run) -> None:
    config = project / "config" / "default.yaml"
    before = config.read_text()
    (project / "mysite" / "blog").mkdir()
    one_line_error(run("startapp", "blog", cwd=project), "mysite/blog already exists")
    assert config.read_text() == before
    assert list((project / "mysite" / "blog").iterdir()) == []


def test_startapp_refuses_an_app_already_listed(project: Path, run: Run) -> None:
    config = project / "config" / "default.yaml"
    config.write_text(
        config.read_text().replace("  - mysite.home\n", "  - mysite.home\n  - mysite.blog\n")
    )
    before = config.read_text()
    one_line_error(run("startapp", "blog", cwd=project), "already listed")
    assert config.read_text() == before
    assert not (project / "mysite" / "blog").exists()


def test_startapp_refuses_apps_it_cannot_edit(project: Path, run: Run) -> None:
    config = project / "config" / "default.yaml"
    # Valid YAML and valid settings, but not a list this edit knows how to extend.
    config.write_text(
        config.read_text().replace("apps:\n  - mysite.home\n", "apps: &apps [mysite.home]\n")
    )
    one_line_error(run("startapp", "blog", cwd=project), "add the line '  - mysite.blog'")
    assert not (project / "mysite" / "blog").exists()


def test_startapp_outside_a_project(run: Run, tmp_path: Path) -> None:
    one_line_error(run("startapp", "blog"), "not inside an aiosite project")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (
            "# apps\napps:\n  # first\n  - p.a  # the a\n  - p.b\n\n# next\nx: 1\n",
            "# apps\napps:\n  # first\n  - p.a  # the a\n  - p.b\n  - p.new\n\n# next\nx: 1\n",
        ),
        ("apps:\n    -   p.a\n", "apps:\n    -   p.a\n    -   p.new\n"),
        ("apps:\n  - 'p.a'\n  - \"p.b\"", "apps:\n  - 'p.a'\n  - \"p.b\"\n  - p.new\n"),
        ("apps:\r\n  - p.a\r\nx: 1\r\n", "apps:\r\n  - p.a\r\n  - p.new\r\nx: 1\r\n"),
        ("apps:\n  - >-\n    p.a\nx: 1\n", "apps:\n  - >-\n    p.a\n  - p.new\nx: 1\n"),
        ("apps: [ ]\n", "apps: [p.new ]\n"),
        ("apps: [p.a,]", "apps: [p.a, p.new]"),
        ("apps: [\"p.a # x\", 'p]b']\n", "apps: [\"p.a # x\", 'p]b', p.new]\n"),
        ("apps: [\n  p.a  # a\n]\n", "apps: [\n  p.a,  # a\n  p.new\n]\n"),
        ("apps: [\n]\n", "apps: [\n  p.new,\n]\n"),
        ("apps: ~  # later\nx: 1\n", "apps:  # later\n  - p.new\nx: 1\n"),
        ("apps:\nx: 1\n", "apps:\n  - p.new\nx: 1\n"),
        ("# only a comment", "# only a comment\n\napps:\n  - p.new\n"),
    ],
)
def test_add_app_keeps_the_file_as_written(before: str, after: str) -> None:
    assert add_app(before, "p.new") == after
    assert yaml.safe_load(after)["apps"][-1] == "p.new"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("apps: [p.a\n", "config/default.yaml:2:1: invalid YAML"),
        ("- p.a\n", "mapping of settings"),
        ("apps: {p.a: 1}\n", "list of package names"),
        ("apps: [p.new]\n", "'p.new' is already listed"),
        ("apps: &x [p.a]\n", "add the line '  - p.new' under apps: by hand"),
    ],
)
def test_add_app_refuses_what_it_cannot_edit(text: str, fragment: str) -> None:
    with pytest.raises(CommandError, match=re.escape(fragment)):
        add_app(text, "p.new")


def test_startapp_needs_the_project_package(project: Path, run: Run) -> None:
    config = project / "config" / "default.yaml"
    config.write_text(config.read_text().replace("  package: mysite\n", ""))
    one_line_error(run("startapp", "blog", cwd=project), "site.package is not set")
    assert not (project / "mysite" / "blog").exists()


def test_startapp_warns_when_another_layer_sets_apps(project: Path, run: Run) -> None:
    (project / "config" / "development.yaml").write_text("apps:\n  - mysite.home\n")
    result = run("startapp", "blog", cwd=project)
    assert result.code == 0, result.err
    assert "config/development.yaml sets its own apps:" in result.err
    assert (project / "mysite" / "blog" / "routes.py").is_file()
