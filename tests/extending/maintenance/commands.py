"""``aiosite maintenance [on|off|status]``: the extension's CLI command."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from aiosite import CommandError, command_settings

from .config import MaintenanceSettings

commands = typer.Typer()


class Action(StrEnum):
    on = "on"
    off = "off"
    status = "status"


@commands.command()
def maintenance(
    ctx: typer.Context, action: Annotated[Action, typer.Argument()] = Action.status
) -> None:
    """Put the site in maintenance (on), take it out (off), or say which it is in."""
    settings = command_settings(ctx)
    flag = settings.project_dir / settings.section(MaintenanceSettings).flag_file
    if action is Action.on:
        try:
            flag.parent.mkdir(parents=True, exist_ok=True)
            flag.touch()
        except OSError as exc:
            raise CommandError(f"cannot write {flag}: {exc.strerror}") from None
    elif action is Action.off:
        flag.unlink(missing_ok=True)
    typer.echo(f"maintenance: {'on' if flag.exists() else 'off'}")
