"""``aiosite run``: the development server."""

from __future__ import annotations

from typing import Annotated

import typer

from aiosite.cli.context import CliState
from aiosite.server import dev


def register(cli: typer.Typer) -> None:
    cli.command("run")(run)


def run(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    reload: Annotated[
        bool | None,
        typer.Option("--reload/--no-reload", help="Restart on code, config or template changes "
                     "(default: server.reload, on in development)."),
    ] = None,
) -> None:
    """Serve the project for development on http://HOST:PORT."""
    state: CliState = ctx.obj
    settings = state.settings()
    host = host or settings.server.host
    port = settings.server.port if port is None else port
    dev.check_port_free(host, port)
    use_reload = settings.server.reload if reload is None else reload
    typer.echo(f"aiosite: serving {settings.site.name!r} ({settings.env}) "
               f"on http://{host}:{port}/" + (" with autoreload" if use_reload else ""))
    if use_reload:
        dev.run_with_reload(settings.project_dir, settings.env, host, port)
    else:
        dev.serve(settings.project_dir, settings.env, host, port)
