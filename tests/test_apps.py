"""Apps: listed in order, imported by the site factory, clashes are clear errors."""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from aiosite import (
    SETTINGS,
    ImproperlyConfigured,
    Settings,
    create_site,
    load_apps,
    load_settings,
    load_site,
)
from aiosite.apps import APPS
from aiosite.site import BATTERIES
from aiosite.web.static import StaticSettings
from tests.cli_runner import invoke, one_line_error
from tests.conftest import ProjectFactory, site_client

BLOG = {
    "PKG/blog/__init__.py": 'from aiosite import App\napp = App("blog", prefix="/blog")\n',
    "PKG/blog/routes.py": """
        from aiohttp import web
        from aiosite import Routes
        routes = Routes()

        @routes.get("/", name="index")
        async def index(request: web.Request) -> web.Response:
            return web.Response(text="blog index")
    """,
}


async def test_apps_are_mounted_under_their_prefix(make_project: ProjectFactory) -> None:
    root = make_project(BLOG, apps=["home", "blog"])
    async with site_client(root) as client:
        resp = await client.get("/blog/")
        assert resp.status == 200
        assert await resp.text() == "blog index"
        assert (await client.get("/")).status == 200
        assert [app.name for app in client.app[APPS]] == ["home", "blog"]


async def test_app_without_declaration_gets_name_and_prefix(make_project: ProjectFactory) -> None:
    files = dict(BLOG)
    files["PKG/blog/__init__.py"] = ""
    root = make_project(files, apps=["home", "blog"])
    async with site_client(root) as client:
        assert (await client.get("/blog/")).status == 200
        assert client.app[APPS].get("blog") is not None


def test_app_that_cannot_be_imported(make_project: ProjectFactory) -> None:
    root = make_project(apps=["home", "nosuchapp"])
    with pytest.raises(
        ImproperlyConfigured, match=r"apps: cannot import '.*\.nosuchapp': there is no module"
    ):
        load_site(root, "test")


def test_a_misspelled_app_gets_a_suggestion(make_project: ProjectFactory) -> None:
    root = make_project(apps=["hmoe"])
    package = root.name
    with pytest.raises(ImproperlyConfigured) as info:
        load_site(root, "test")
    assert str(info.value) == (
        f"apps: cannot import '{package}.hmoe': there is no module '{package}.hmoe'; "
        f"did you mean '{package}.home'? (list an app by its dotted package name, "
        "e.g. mysite.blog)"
    )


def test_an_app_listed_without_its_project_package(make_project: ProjectFactory) -> None:
    root = make_project(default_yaml="site:\n  package: PKG\napps:\n  - home\n")
    with pytest.raises(ImproperlyConfigured, match=rf"did you mean '{root.name}\.home'\?"):
        load_site(root, "test")


def test_a_contrib_app_that_does_not_exist(make_project: ProjectFactory) -> None:
    root = make_project(default_yaml="site:\n  package: PKG\napps:\n  - aiosite.contrib.admin\n")
    with pytest.raises(ImproperlyConfigured) as info:
        load_site(root, "test")
    assert str(info.value) == (
        "apps: cannot import 'aiosite.contrib.admin': aiosite has no contrib app 'admin' "
        "(the contrib apps are: aiosite.contrib.auth)"
    )


def listed_apps(apps: str) -> str:
    return f"site:\n  package: PKG\napps:\n  - {apps}\n"


def test_a_misspelled_app_is_corrected_part_by_part(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_project(default_yaml=listed_apps("aiosite.contri.auth"))
    result = invoke(capsys, ["--project", str(root), "routes"])
    one_line_error(
        result,
        "there is no module 'aiosite.contri' (in 'aiosite.contri.auth'); "
        "did you mean 'aiosite.contrib.auth'?",
    )


@pytest.mark.parametrize(
    "listed",
    [
        "PKG.home.nope",  # home has routes.py, a module: not an app to suggest
        "yamll.blog",  # close to PyYAML's yaml, which is no app of this project
        "aiosite.wbe",  # close to aiosite.web, which is no app either
    ],
)
def test_only_apps_are_suggested(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str], listed: str
) -> None:
    root = make_project(default_yaml=listed_apps(listed))
    result = invoke(capsys, ["--project", str(root), "routes"])
    line = one_line_error(result, "there is no module")
    assert "did you mean" not in line


def test_where_an_import_failed_is_shown_from_the_project(
    make_project: ProjectFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    root = make_project({"PKG/broken/__init__.py": "\nimport nosuchmodule_xyz\n"}, apps=["broken"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = invoke(capsys, ["--project", str(root), "routes"])
    assert one_line_error(result).endswith(f"(at {root.name}/broken/__init__.py:2)")


def test_app_whose_import_fails_shows_the_cause(make_project: ProjectFactory) -> None:
    root = make_project(
        {"PKG/broken/__init__.py": "import os\nimport nosuchmodule_xyz\n"},
        apps=["home", "broken"],
    )
    with pytest.raises(ImproperlyConfigured) as info:
        load_site(root, "test")
    message = str(info.value)
    assert message.startswith(
        f"apps: '{root.name}.broken' was found, but its code imports 'nosuchmodule_xyz', "
        "which is not installed (or is misspelled) (at "
    )
    assert message.endswith(f"{root.name}/broken/__init__.py:2)")


def test_app_importing_a_missing_module_of_the_project(make_project: ProjectFactory) -> None:
    root = make_project(
        {"PKG/broken/__init__.py": "\nfrom PKG.helpers import tool\n"}, apps=["home", "broken"]
    )
    with pytest.raises(ImproperlyConfigured) as info:
        load_site(root, "test")
    assert f"its code imports '{root.name}.helpers', which does not exist" in str(info.value)
    assert str(info.value).endswith("broken/__init__.py:2)")


def test_app_importing_a_missing_name(make_project: ProjectFactory) -> None:
    root = make_project(
        {"PKG/broken/__init__.py": "from aiosite import no_such_name\n"}, apps=["home", "broken"]
    )
    with pytest.raises(ImproperlyConfigured) as info:
        load_site(root, "test")
    assert "its code fails to import: cannot import name 'no_such_name' from 'aiosite'" in str(
        info.value
    )
    assert str(info.value).endswith("broken/__init__.py:1)")


def test_same_name_clashes(make_project: ProjectFactory) -> None:
    files = dict(BLOG)
    files["PKG/other/__init__.py"] = 'from aiosite import App\napp = App("blog", prefix="/o")\n'
    root = make_project(files, apps=["home", "blog", "other"])
    with pytest.raises(ImproperlyConfigured, match="are both named 'blog'"):
        load_site(root, "test")


def test_same_prefix_clashes(make_project: ProjectFactory) -> None:
    files = dict(BLOG)
    files["PKG/other/__init__.py"] = 'from aiosite import App\napp = App("other", prefix="/blog")\n'
    root = make_project(files, apps=["home", "blog", "other"])
    with pytest.raises(ImproperlyConfigured, match="are both mounted at '/blog'"):
        load_site(root, "test")


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        ('app = "blog"', r"\.app must be an aiosite\.App\(\.\.\.\) declaration"),
        ('from aiosite import App\napp = App("my-blog")', "an app name must be an identifier"),
        ('from aiosite import App\napp = App("blog", prefix="blog x")', "a prefix looks like"),
    ],
)
def test_bad_declarations(make_project: ProjectFactory, declaration: str, message: str) -> None:
    files = dict(BLOG)
    files["PKG/blog/__init__.py"] = declaration + "\n"
    root = make_project(files, apps=["home", "blog"])
    with pytest.raises(ImproperlyConfigured, match=message):
        load_site(root, "test")


def test_routes_module_without_table(make_project: ProjectFactory) -> None:
    files = dict(BLOG)
    files["PKG/blog/routes.py"] = "routes = []\n"
    root = make_project(files, apps=["home", "blog"])
    with pytest.raises(
        ImproperlyConfigured, match=r"blog\.routes must define `routes = Routes\(\)`"
    ):
        load_site(root, "test")


async def test_project_hooks_and_app_setup(make_project: ProjectFactory) -> None:
    files = dict(BLOG)
    files["PKG/blog/__init__.py"] = """
        from aiohttp import web
        from aiosite import App

        def add_ping(app: web.Application, settings: object, registry: object) -> None:
            async def ping(request: web.Request) -> web.Response:
                return web.Response(text="pong")
            app.router.add_get("/ping", ping)

        app = App("blog", prefix="/blog", setup=add_ping)
    """
    files["PKG/site.py"] = """
        from aiohttp import web

        @web.middleware
        async def stamp(request, handler):
            response = await handler(request)
            response.headers["X-Stamp"] = "project"
            return response

        middlewares = [stamp]

        def setup(app: web.Application, settings: object, registry: object) -> None:
            async def extra(request: web.Request) -> web.Response:
                return web.Response(text="extra")
            app.router.add_get("/extra", extra)
    """
    root = make_project(files, apps=["home", "blog"])
    async with site_client(root) as client:
        resp = await client.get("/ping")
        assert await resp.text() == "pong"
        assert resp.headers["X-Stamp"] == "project"
        assert await (await client.get("/extra")).text() == "extra"


# --- an app's own settings section and setup ----------------------------------------

SECTION_APP = {
    "PKG/shop/__init__.py": """
        from pydantic import Field

        from aiosite import App, Section


        class ShopSettings(Section):
            currency: str = "EUR"
            api_key: str
            max_items: int = Field(default=10, gt=0)


        app = App("shop", settings=ShopSettings)
    """,
}


def shop_settings(root: Path) -> Any:
    settings = load_settings(root, "test")
    return settings.section(importlib.import_module(f"{root.name}.shop").ShopSettings)


def test_an_app_declares_its_settings_section(make_project: ProjectFactory) -> None:
    root = make_project(SECTION_APP, apps=["home", "shop"])
    (root / "config" / "test.yaml").write_text("shop:\n  api_key: k-123\n  max_items: 3\n")
    section = shop_settings(root)
    assert (section.currency, section.api_key, section.max_items) == ("EUR", "k-123", 3)
    assert load_settings(root, "test").shop == section  # also by its name, untyped


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("shop:\n  api_key: k\n  max_items: 0\n", "config/test.yaml: shop.max_items: "),
        (
            "shop:\n  api_key: k\n  curency: USD\n",
            "config/test.yaml: shop.curency: unknown setting",
        ),
        (
            "{}\n",
            "settings: shop.api_key: missing; set it in config/default.yaml or as "
            "AIOSITE_SHOP__API_KEY",
        ),
        ("shop: {api_key: k}\nshoop: {api_key: k}\n", "config/test.yaml: shoop: unknown setting"),
    ],
    ids=["wrong-value", "unknown-key", "required", "unknown-section"],
)
def test_a_bad_app_section_is_one_line_naming_file_and_key(
    make_project: ProjectFactory, yaml_text: str, message: str
) -> None:
    root = make_project(SECTION_APP, apps=["home", "shop"])
    (root / "config" / "test.yaml").write_text(yaml_text)
    with pytest.raises(ImproperlyConfigured) as info:
        load_settings(root, "test")
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_an_app_section_may_not_take_a_batterys_name(make_project: ProjectFactory) -> None:
    files = {
        "PKG/static/__init__.py": (
            "from aiosite import App, Section\n\n"
            "class Mine(Section):\n    pass\n\n"
            'app = App("static", prefix="/mine", settings=Mine)\n'
        )
    }
    root = make_project(files, apps=["home", "static"])
    with pytest.raises(ImproperlyConfigured) as info:
        load_settings(root, "test")
    assert str(info.value).startswith(
        f"apps: the app {root.name}.static declares the settings section 'static', which "
        "aiosite.static has"
    )


def test_settings_is_a_section_model(make_project: ProjectFactory) -> None:
    files = {"PKG/shop/__init__.py": 'from aiosite import App\napp = App("shop", settings=dict)\n'}
    root = make_project(files, apps=["home", "shop"])
    with pytest.raises(
        ImproperlyConfigured, match=r"settings= takes a subclass of aiosite\.Section"
    ):
        load_site(root, "test")


def test_an_installed_apps_section_is_checked_before_the_app_is_listed(
    make_project: ProjectFactory,
) -> None:
    # aiosite.contrib.auth declares `auth` by entry point: a new project's test.yaml
    # configures it before the app is listed.
    from aiosite.contrib.auth import AuthSettings

    root = make_project()
    (root / "config" / "test.yaml").write_text("auth:\n  hasher:\n    time_cost: 1\n")
    assert load_settings(root, "test").section(AuthSettings).hasher.time_cost == 1
    (root / "config" / "test.yaml").write_text("auth:\n  hasher:\n    time_cots: 1\n")
    with pytest.raises(ImproperlyConfigured) as info:
        load_settings(root, "test")
    assert str(info.value) == (
        "config/test.yaml: auth.hasher.time_cots: unknown setting; did you mean 'time_cost'?"
    )


def test_an_old_one_argument_setup_is_named(make_project: ProjectFactory) -> None:
    files = {
        "PKG/site.py": "def setup(app):\n    pass\n",
    }
    root = make_project(files)
    with pytest.raises(ImproperlyConfigured) as info:
        load_site(root, "test")
    assert str(info.value).startswith(
        f"apps: {root.name}.site.setup must take (app, settings, registry)"
    )


def test_every_battery_refuses_an_application_that_has_started(
    make_project: ProjectFactory,
) -> None:
    root = make_project()
    settings = load_settings(root, "test")
    registry = load_apps(settings)
    app = web.Application()
    app.freeze()
    for battery in BATTERIES:
        with pytest.raises(RuntimeError) as info:
            battery.setup(app, settings, registry)
        assert str(info.value).startswith(f"{battery.name}: the application has already started")


async def test_an_apps_template_globals_win_over_the_batteries(
    make_project: ProjectFactory,
) -> None:
    files = {
        "PKG/home/__init__.py": (
            "from aiosite import App\n\n"
            "def cdn(path):\n    return 'https://cdn.example/' + path\n\n"
            'app = App("home", prefix="", template_globals={"static": cdn})\n'
        ),
        "PKG/home/templates/home/index.html": "{{ static('site.css') }} {{ url('home:index') }}",
    }
    root = make_project(files)
    async with site_client(root) as client:
        assert await (await client.get("/")).text() == "https://cdn.example/site.css /"


async def test_a_site_from_settings_made_by_hand(make_project: ProjectFactory) -> None:
    root = make_project(SECTION_APP, apps=["home", "shop"])
    (root / "config" / "test.yaml").write_text("shop:\n  api_key: k-123\n")
    loaded = load_settings(root, "test")
    # Settings(...) alone knows only the site-wide sections; the site fills in the
    # sections of its batteries (and apps) with their defaults.
    by_hand = Settings(
        project_dir=root, env="test", site=loaded.site, apps=loaded.apps, security=loaded.security
    )
    with pytest.raises(ImproperlyConfigured) as info:
        create_site(by_hand)  # the app's section has a key without a default
    assert str(info.value).startswith("settings: shop.api_key: missing; ")
    app = create_site(Settings(project_dir=root, env="test", site=loaded.site, apps=[]))
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/static/home/site.css")).status == 404  # no apps, no files
        assert client.app[SETTINGS].section(StaticSettings).url == "/static/"


def test_loaded_settings_survive_pickling(make_project: ProjectFactory) -> None:
    root = make_project(SECTION_APP, apps=["home", "shop"])
    (root / "config" / "test.yaml").write_text("shop:\n  api_key: k-123\n")
    settings = load_settings(root, "test")
    copied = pickle.loads(pickle.dumps(settings))  # noqa: S301 - its own bytes
    assert copied == settings
    assert copied.section(type(settings.shop)).api_key == "k-123"


async def test_apps_of_gives_a_handler_the_sites_apps(make_project: ProjectFactory) -> None:
    files = dict(BLOG)
    files["PKG/blog/routes.py"] = """
        from aiosite import Routes, apps_of, json_response

        routes = Routes()

        @routes.get("/apps", name="apps")
        async def apps(request):
            return json_response([loaded.name for loaded in apps_of(request)])
    """
    root = make_project(files, apps=["home", "blog"])
    async with site_client(root) as client:
        assert await (await client.get("/blog/apps")).json() == ["home", "blog"]
