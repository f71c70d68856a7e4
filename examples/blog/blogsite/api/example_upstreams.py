"""Stand-ins for the upstreams of ``/api/dashboard``, to try it on your machine::

    python -m blogsite.api.example_upstreams                 # all three answer at once
    python -m blogsite.api.example_upstreams --slow news     # news answers after 5 s
    python -m blogsite.api.example_upstreams --fail status   # status answers 500

They listen where config/default.yaml's ``http.services`` point (127.0.0.1, ports 9801
to 9803) and answer any GET with a little JSON. Not part of the site: the site only
ever calls them, as it would call real services.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

SLOW_SECONDS = 5.0


def _weather() -> dict[str, Any]:
    return {"city": "Oslo", "sky": random.choice(["clear", "cloudy", "rain"]), "celsius": 7}  # noqa: S311


def _news() -> dict[str, Any]:
    return {"headlines": ["aiohttp 3.14 released", "Async all the way down"]}


def _status() -> dict[str, Any]:
    return {"ok": True, "checked": datetime.now(UTC).isoformat()}


UPSTREAMS: dict[str, tuple[int, Callable[[], dict[str, Any]]]] = {
    "weather": (9801, _weather),
    "news": (9802, _news),
    "status": (9803, _status),
}


def _app(answer: Callable[[], dict[str, Any]], *, slow: bool, fail: bool) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        if slow:
            await asyncio.sleep(SLOW_SECONDS)
        if fail:
            return web.json_response({"error": "failing on purpose"}, status=500)
        return web.json_response(answer())

    app = web.Application()
    app.router.add_get("/{path:.*}", handler)
    return app


async def serve(slow: set[str], fail: set[str]) -> None:
    runners = []
    for name, (port, answer) in UPSTREAMS.items():
        runner = web.AppRunner(_app(answer, slow=name in slow, fail=name in fail))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        print(f"{name}: http://127.0.0.1:{port}/")
    try:
        await asyncio.Event().wait()
    finally:
        for runner in runners:
            await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    names = list(UPSTREAMS)
    parser.add_argument("--slow", action="append", default=[], choices=names)
    parser.add_argument("--fail", action="append", default=[], choices=names)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(set(args.slow), set(args.fail)))


if __name__ == "__main__":
    main()
