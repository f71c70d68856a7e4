"""The small project the security tests run against, and helpers to talk to it."""

from __future__ import annotations

import re

from aiohttp import web
from aiohttp.test_utils import TestClient

Client = TestClient[web.Request, web.Application]

ROUTES = """
    import functools
    import logging

    from aiohttp import web

    from aiosite import Routes, template
    from aiosite.keys import CSRF_CHECK, CSRF_PENDING, STREAMS_BODY
    from aiosite.security import csrf_exempt, get_csrf_token, is_secure, rotate_csrf_token

    routes = Routes()


    @routes.get("/", name="index")
    @template("home/index.html")
    async def index(request: web.Request) -> dict[str, object]:
        return {"greeting": "Hello"}


    @routes.get("/form", name="form")
    @template("home/form.html")
    async def form(request: web.Request) -> dict[str, object]:
        return {}


    @routes.get("/plain", name="plain")
    async def plain(request: web.Request) -> web.Response:
        return web.Response(text="Hello, World!")


    @routes.get("/secure", name="secure")
    async def secure(request: web.Request) -> web.Response:
        return web.Response(text=f"secure={is_secure(request)}")


    @routes.get("/token", name="token")
    async def token(request: web.Request) -> web.Response:
        return web.json_response({"token": await get_csrf_token(request)})


    @routes.get("/own-headers", name="own_headers")
    async def own_headers(request: web.Request) -> web.Response:
        return web.Response(
            text="<p>framed</p>",
            content_type="text/html",
            headers={
                "X-Frame-Options": "SAMEORIGIN",
                "Content-Security-Policy": "default-src 'none'",
                "Referrer-Policy": "no-referrer",
            },
        )


    @routes.post("/submit", name="submit")
    async def submit(request: web.Request) -> web.Response:
        form = await request.post()
        return web.Response(text=f"saved {form.get('title', '')}")


    @routes.post("/login", name="login")
    async def login(request: web.Request) -> web.Response:
        await rotate_csrf_token(request)
        return web.Response(text="logged in")


    @routes.put("/items/{id}", name="replace")
    async def replace(request: web.Request) -> web.Response:
        return web.Response(text="replaced")


    @routes.delete("/items/{id}", name="remove")
    async def remove(request: web.Request) -> web.Response:
        return web.Response(text="removed")


    @routes.post("/hook", name="hook")
    @csrf_exempt
    async def hook(request: web.Request) -> web.Response:
        return web.Response(text="hook ok")


    def logged(handler):
        @functools.wraps(handler)
        async def wrapper(request):
            return await handler(request)

        return wrapper


    @routes.post("/wrapped-hook", name="wrapped_hook")
    @csrf_exempt
    @logged
    async def wrapped_hook(request: web.Request) -> web.Response:
        return web.Response(text="wrapped hook ok")


    @routes.view("/view-hook", name="view_hook")
    @csrf_exempt
    class ViewHook(web.View):
        async def post(self) -> web.Response:
            return web.Response(text="view hook ok")


    @routes.view("/view-method", name="view_method")
    class ViewMethod(web.View):
        @csrf_exempt
        async def post(self) -> web.Response:
            return web.Response(text="view method ok")

        async def delete(self) -> web.Response:
            return web.Response(text="view delete")


    async def upload(request: web.Request) -> web.Response:
        # What the uploads battery's reader does: when the token did not come in the
        # header, it must be the form's first field, checked before anything is stored.
        reader = await request.multipart()
        sizes = []
        if request.get(CSRF_PENDING):
            first = await reader.next()
            token = None
            if first is not None and first.name == "csrf_token":
                token = await first.text()
            await request.config_dict[CSRF_CHECK](request, token)
        async for part in reader:
            sizes.append(len(await part.read()))
        return web.Response(text=f"stored {sizes}")


    setattr(upload, STREAMS_BODY, True)
    routes.post("/upload", upload, name="upload")


    async def careless_upload(request: web.Request) -> web.Response:
        return web.Response(text="never checked")


    setattr(careless_upload, STREAMS_BODY, True)
    routes.post("/careless-upload", careless_upload, name="careless_upload")
"""

FORM_TEMPLATE = """\
<html><head><meta name="csrf-token" content="{{ csrf_token() }}"></head>
<body><form method="post" action="/submit">{{ csrf_input() }}<input name="title"></form></body>
</html>
"""

FILES = {
    "PKG/home/routes.py": ROUTES,
    "PKG/home/templates/home/form.html": FORM_TEMPLATE,
}

_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


async def form_token(client: Client, path: str = "/form") -> str:
    """The token of the hidden field on the form page (as a browser would submit it)."""
    resp = await client.get(path)
    assert resp.status == 200
    match = _FIELD.search(await resp.text())
    assert match is not None, "no csrf_token field on the page"
    return match.group(1)


async def meta_token(client: Client, path: str = "/form") -> str:
    """The token of the page's <meta name="csrf-token"> (as JavaScript would read it)."""
    resp = await client.get(path)
    match = _META.search(await resp.text())
    assert match is not None, "no csrf-token meta tag on the page"
    return match.group(1)


def site_origin(client: Client, scheme: str = "http") -> str:
    return f"{scheme}://{client.server.host}:{client.server.port}"
