"""Apps contribute CLI commands through ``App(commands=...)``."""

from __future__ import annotations

import pytest

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
