"""The two hello-world routes the benchmark loads, written as a user would."""

from aiohttp import web

from aiosite import Routes, json_response

routes = Routes()


@routes.get("/json", name="json")
async def hello_json(request: web.Request) -> web.Response:
    return json_response({"message": "Hello, World!"})


@routes.get("/plaintext", name="plaintext")
async def hello_plaintext(request: web.Request) -> web.Response:
    return web.Response(text="Hello, World!")
