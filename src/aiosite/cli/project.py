"""``aiosite new`` and ``aiosite startapp`` (being written)."""

from __future__ import annotations

import typer


def register(cli: typer.Typer) -> None:
    return None
