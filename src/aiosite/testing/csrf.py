"""CSRF tokens for tests that post to a site without rendering its form first.

aiosite checks CSRF in tests too (a test that passes without the check would hide a form
that lacks ``csrf_input()``). A test about something else gets a valid token for its
client's session here: the token is made by the site's own code and the session cookie
by the site's own session storage, exactly as a GET of a form page would.
"""

from __future__ import annotations

from typing import Any

from aiohttp import hdrs, web
from aiohttp.test_utils import TestClient, make_mocked_request
from multidict import CIMultiDict

from aiosite.security.csrf_tokens import HEADER_NAME, get_csrf_token
from aiosite.sessions import SESSION_STORE


async def csrf_token(client: TestClient[Any, web.Application]) -> str:
    """A CSRF token for ``client`` (its secret made when it has none), e.g.
    ``await client.post("/items", json=..., headers={"X-CSRF-Token": await csrf_token(client)})``
    or as the ``csrf_token`` field of a form."""
    app = client.app
    if app is None:
        raise RuntimeError("csrf_token needs a client on an aiosite site")
    url = client.make_url("/")
    headers = CIMultiDict[str]()
    cookies = client.session.cookie_jar.filter_cookies(url)
    if cookies:
        headers[hdrs.COOKIE] = "; ".join(f"{name}={m.value}" for name, m in cookies.items())
    request = make_mocked_request("GET", "/", headers=headers, app=app)
    store = app[SESSION_STORE]
    store.attach(request)  # as the site's request hook does
    token = await get_csrf_token(request)
    response = web.Response()
    pending = store.save(request, response)  # as the site's response hook does
    if pending is not None:
        await pending
    # The session cookie, or the CSRF cookie of a client whose session holds nothing.
    client.session.cookie_jar.update_cookies(response.cookies, url)
    return token


async def csrf_headers(client: TestClient[Any, web.Application]) -> dict[str, str]:
    """``{"X-CSRF-Token": token}`` for ``client``'s session."""
    return {HEADER_NAME: await csrf_token(client)}
