"""Site-wide hooks. aiosite reads three names from this module; each one is optional.

``middlewares``
    aiohttp middlewares, run in order after aiosite's own.
``context_processors``
    functions ``(request) -> dict`` (plain or async) whose result every template sees.
``setup(app, settings, registry)``
    called once while the site is assembled, after every app's own setup: add startup
    and cleanup hooks (``app.cleanup_ctx``), typed keys or request hooks
    (``aiosite.hooks_of(app)``) here, never from a handler.
"""

import datetime
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from aiosite import AppRegistry, Settings

# For example:
#
#     @web.middleware
#     async def no_store(request: web.Request, handler: Handler) -> web.StreamResponse:
#         response = await handler(request)
#         response.headers["Cache-Control"] = "no-store"
#         return response
#
#     middlewares = [no_store]
middlewares: list[Middleware] = []


def current_year(request: web.Request) -> dict[str, Any]:
    """base.html's footer shows the year."""
    return {"current_year": datetime.date.today().year}


context_processors = [current_year]


def setup(app: web.Application, settings: Settings, registry: AppRegistry) -> None:
    """Runs once, before the site starts."""
    # For example, one HTTP client shared by every handler, closed on shutdown:
    #
    #     CLIENT = web.AppKey("client", aiohttp.ClientSession)
    #
    #     async def http_client(app: web.Application) -> AsyncIterator[None]:
    #         app[CLIENT] = aiohttp.ClientSession()
    #         yield
    #         await app[CLIENT].close()
    #
    #     app.cleanup_ctx.append(http_client)
