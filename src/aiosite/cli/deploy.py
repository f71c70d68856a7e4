"""``aiosite deploy nginx|systemd|supervisor``: the files that run the site in production."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from aiosite.cli.context import CliState
from aiosite.exceptions import CommandError

# A deployment is written for the production settings unless --env or AIOSITE_ENV says
# otherwise (as for `aiosite serve`).
DEFAULT_ENV = "production"


class Kind(StrEnum):
    nginx = "nginx"
    systemd = "systemd"
    supervisor = "supervisor"


def register(cli: typer.Typer) -> None:
    cli.command("deploy")(deploy)


def deploy(
    ctx: typer.Context,
    kind: Annotated[
        Kind,
        typer.Argument(
            help="nginx: the site file for /etc/nginx/sites-available; systemd: the "
            "service unit; supervisor: the program section."
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the file here instead of to stdout."),
    ] = None,
) -> None:
    """Print a deployment file made from the site's settings (default env: production)."""
    from aiosite.server.deploy import deploy_file

    state: CliState = ctx.obj
    if state.env is None and not os.environ.get("AIOSITE_ENV"):
        state.env = DEFAULT_ENV
    text = deploy_file(kind.value, state.settings())
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text)
    except OSError as exc:
        raise CommandError(
            f"cannot write {output}: {exc.strerror or exc}; choose another --output path"
        ) from None
