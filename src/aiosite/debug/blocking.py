"""Event-loop block detector (being written)."""

from __future__ import annotations

from aiohttp import web

from aiosite.settings import Settings


class BlockDetector:
    pass


def setup(app: web.Application, settings: Settings) -> None:
    return None
