"""Commands that apps contribute with ``App(commands=typer.Typer())``.

They are looked up only when the command line names a command aiosite itself does not
have (or asks for help), so a broken project never stops `aiosite new` or `--help`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import typer
import typer.core

from aiosite.apps import load_apps
from aiosite.cli.context import CliState
from aiosite.exceptions import AiositeError, ImproperlyConfigured


class AppCommandsGroup(typer.core.TyperGroup):
    """aiosite's commands first, then those of the project's apps, in ``apps:`` order."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        return _app_commands(ctx).get(cmd_name)

    def list_commands(self, ctx: Any) -> list[str]:
        names = list(super().list_commands(ctx))
        names.extend(name for name in _app_commands(ctx) if name not in names)
        return names


def _app_commands(ctx: Any) -> dict[str, Any]:
    state = ctx.obj if isinstance(ctx.obj, CliState) else CliState()
    project = ctx.params.get("project")
    if project is not None:
        state.project = Path(project)
    if ctx.params.get("env"):
        state.env = ctx.params["env"]
    try:
        registry = load_apps(state.settings())
    except AiositeError:
        return {}  # the command itself reports the project's error
    groups = []
    for loaded in registry:
        try:
            groups.append(_typer(loaded.package, loaded.config.commands))
        except AiositeError as exc:
            # One app's broken commands= hides only that app's commands, and says why.
            typer.echo(f"error: {exc}", err=True)
    commands: dict[str, Any] = {}
    for group in groups:
        if group is None:
            continue
        click_group = typer.main.get_command(group)
        sub = getattr(click_group, "commands", None)
        if isinstance(sub, dict):
            for name, command in sub.items():
                commands.setdefault(name, command)
        elif click_group.name:
            commands.setdefault(click_group.name, click_group)
    return commands


def _typer(package: str, commands: typer.Typer | str | None) -> typer.Typer | None:
    """An app's ``commands``, imported when given as ``"package.module:attribute"``."""
    if not isinstance(commands, str):
        return commands
    module_name, _, attribute = commands.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ImproperlyConfigured(
            f"apps: {package}: commands={commands!r} does not import: {exc}"
        ) from exc
    if not isinstance(found, typer.Typer):
        raise ImproperlyConfigured(f"apps: {package}: commands={commands!r} is not a typer.Typer")
    return found
