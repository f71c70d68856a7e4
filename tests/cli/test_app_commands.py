"""Apps contribute CLI commands through ``App(commands=...)``."""

from __future__ import annotations

import sys

import pytest

from aiosite import load_site
from aiosite.cli import main
from tests.conftest import ProjectFactory

GREETER = {
    "PKG/greeter/__init__.py": """
        import typer
        from aiosite import App

        commands = typer.Typer()

        @commands.command()
        def greet(ctx: typer.Context, name: str = "world") -> None:
            '''Say hello from an app command.'''
            settings = ctx.find_root().obj.settings()
            typer.echo(f"hello {name} from {settings.site.name}")

        app = App("greeter", commands=commands)
    """,
}


def test_app_command_runs_with_the_project_settings(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_project(GREETER, apps=["home", "greeter"])
    with pytest.raises(SystemExit) as info:
        main(["--project", str(root), "greet", "--name", "ada"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == "hello ada from Test Site"
    with pytest.raises(SystemExit):
        main(["--project", str(root), "--help"])
    assert "greet" in capsys.readouterr().out


def test_builtin_commands_work_in_a_broken_project(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_project(apps=["home", "missing"])
    with pytest.raises(SystemExit) as info:
        main(["--project", str(root), "--help"])
    assert info.value.code == 0
    assert "routes" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["--project", str(root), "greet"])
    assert info.value.code == 2
    assert "No such command 'greet'" in capsys.readouterr().err


def test_app_commands_given_by_path_are_imported_by_the_command_line_only(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    # App(commands="module:attribute"): the site never imports the commands (nor Typer);
    # the command line finds them as it finds a Typer given itself.
    root = make_project(
        {
            "PKG/greeter/__init__.py": """
                from aiosite import App

                app = App("greeter", commands="PKG.greeter.commands:commands")
            """,
            "PKG/greeter/commands.py": GREETER["PKG/greeter/__init__.py"].replace(
                'app = App("greeter", commands=commands)', ""
            ),
        },
        apps=["home", "greeter"],
    )
    load_site(root, "test")
    assert f"{root.name}.greeter.commands" not in sys.modules
    with pytest.raises(SystemExit) as info:
        main(["--project", str(root), "greet", "--name", "ada"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == "hello ada from Test Site"


def test_an_app_whose_commands_do_not_import_hides_only_its_own(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_project(
        {
            **GREETER,
            "PKG/broken/__init__.py": """
                from aiosite import App

                app = App("broken", commands="PKG.broken.nowhere:commands")
            """,
        },
        apps=["home", "greeter", "broken"],
    )
    with pytest.raises(SystemExit) as info:
        main(["--project", str(root), "greet", "--name", "ada"])
    assert info.value.code == 0
    out, err = capsys.readouterr()
    assert out.strip() == "hello ada from Test Site"
    assert "nowhere:commands' does not import" in err
