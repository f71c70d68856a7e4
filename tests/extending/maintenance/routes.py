from aiohttp import web

from aiosite import Routes, json_response, render

from .hooks import MAINTENANCE

routes = Routes()


@routes.get("/", name="page")
async def page(request: web.Request) -> web.Response:
    return await render(request, "maintenance/page.html")


@routes.get("/status", name="status")
async def status(request: web.Request) -> web.Response:
    state = request.config_dict[MAINTENANCE]
    return json_response({"on": state.on, "watching": state.watching})
