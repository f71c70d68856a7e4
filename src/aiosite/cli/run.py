"""``aiosite run``: the development server."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from aiosite.cli.context import CliState
from aiosite.server import dev
from aiosite.uploads.config import media_root
from aiosite.web.logs import access_log_options, configure_logging


class Loop(StrEnum):
    auto = "auto"
    uvloop = "uvloop"
    asyncio = "asyncio"


def register(cli: typer.Typer) -> None:
    cli.command("run")(run)


def run(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option(help="Interface to listen on (default: server.host).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (default: server.port).", min=0, max=65535)
    ] = None,
    reload: Annotated[
        bool | None,
        typer.Option(
            "--reload/--no-reload",
            help="Restart on code, config or template changes "
            "(default: the server.reload setting; new projects turn it on in "
            "config/development.yaml).",
        ),
    ] = None,
    loop: Annotated[
        Loop, typer.Option(help="Event loop: auto (uvloop when installed), uvloop or asyncio.")
    ] = Loop.auto,
) -> None:
    """Serve the project for development on http://HOST:PORT."""
    state: CliState = ctx.obj
    settings = state.settings()
    config = dev.ServerConfig(
        project_dir=settings.project_dir,
        env=settings.env,
        host=host or settings.server.host,
        port=settings.server.port if port is None else port,
        configure_logging=configure_logging,
        **access_log_options(settings.server.access_log_format),
        loop=loop.value,
        unwatched=(media_root(settings),),
    )
    if settings.server.reload if reload is None else reload:
        dev.run_with_reload(config)
    else:
        dev.serve(config, settings=settings)
