"""A project whose routes are rate-limited every way aiosite offers."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import ProjectFactory

ROUTES = """\
from aiohttp import web
from wtforms import StringField

from aiosite import Routes, check_rate_limit, csrf_exempt, hit_rate_limit, rate_limit, render
from aiosite.forms import Form

routes = Routes()


def by_token(request: web.Request) -> str | None:
    # None exempts a request without a token.
    return request.headers.get("X-Token")


async def by_async_token(request: web.Request) -> str | None:
    return by_token(request)


# A minute, not a second: a test's requests (the first renders the error page's
# templates) must all fall in one window even on a loaded machine.
@routes.get("/limited", name="limited")
@rate_limit("2/minute")
async def limited(request: web.Request) -> web.Response:
    return web.Response(text="served")


# For the one test that waits for a window to pass.
@routes.get("/short", name="short")
@rate_limit("1/second")
async def short(request: web.Request) -> web.Response:
    return web.Response(text="short")


@routes.route("*", "/form", name="form")
@csrf_exempt
@rate_limit("1/minute", methods=["POST"])
async def form(request: web.Request) -> web.Response:
    return web.Response(text=request.method)


@routes.view("/comments", name="comments")
@csrf_exempt
class Comments(web.View):
    async def get(self) -> web.Response:
        return web.Response(text="listed")

    @rate_limit("1/minute", key=by_async_token)
    async def post(self) -> web.Response:
        return web.Response(text="posted")


@routes.get("/shared-a", name="shared_a")
@rate_limit("1/minute", key=by_token, scope="shared")
async def shared_a(request: web.Request) -> web.Response:
    return web.Response(text="a")


@routes.get("/shared-b", name="shared_b")
@rate_limit("1/minute", key=by_token, scope="shared")
async def shared_b(request: web.Request) -> web.Response:
    return web.Response(text="b")


@routes.get("/inside", name="inside")
async def inside(request: web.Request) -> web.Response:
    result = await hit_rate_limit(request, "1/minute", key=by_token)
    if not result.allowed:
        return web.Response(text=f"wait {result.retry_after}s ({result.limit})", status=429)
    return web.Response(text="inside")


@routes.get("/checked", name="checked")
async def checked(request: web.Request) -> web.Response:
    await check_rate_limit(request, "1/minute", key=by_token, scope="exports")
    return web.Response(text="checked")


class CommentForm(Form):
    body = StringField("Comment")


# As docs/rate-limits.md shows it: the form again, with what was typed and the wait.
@routes.post("/inside-form", name="inside_form")
@csrf_exempt
async def inside_form(request: web.Request) -> web.Response:
    form = await CommentForm.from_request(request)
    result = await hit_rate_limit(request, "1/minute", key=by_token, scope="comments")
    if not result.allowed:
        form.add_error("body", f"Wait {result.retry_after} seconds and send it again.")
        response = await render(request, "home/form.html", {"form": form}, status=429)
        response.headers["Retry-After"] = str(result.retry_after)
        return response
    return web.Response(text="sent")
"""

FORM_HTML = """\
{% for error in form.body.errors %}<p class="error">{{ error }}</p>{% endfor %}
<textarea name="body">{{ form.body.data }}</textarea>
"""

# Other addresses through a proxy the site trusts.
TRUSTED_PROXY = "security:\n  trust_proxy_headers: true\n"


def limited_project(make_project: ProjectFactory, test_yaml: str = "") -> Path:
    return make_project(
        {"PKG/home/routes.py": ROUTES, "PKG/home/templates/home/form.html": FORM_HTML},
        env_yaml={"test": TRUSTED_PROXY + test_yaml},
    )


def from_address(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


def a_minute_at_most(retry_after: str) -> int:
    """The seconds of a 429's ``Retry-After`` under a 1-minute limit: whole, at most 60."""
    seconds = int(retry_after)
    assert 1 <= seconds <= 60, retry_after
    return seconds
