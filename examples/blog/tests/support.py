"""What the blog's tests share besides fixtures: the fixtures' types, the test accounts'
password, and reading a form's CSRF token out of a page.

A test module imports these (``from support import Client, LogIn``): pytest puts this
folder on ``sys.path``, as it does for conftest.py.
"""

import re
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient
from blogsite.blog.models import Post, Tag

from aiosite.contrib.auth import User

PASSWORD = "correct horse battery"  # noqa: S105 - the test accounts' password

Client = TestClient[web.Request, web.Application]
AddPosts = Callable[..., Awaitable[list[Post]]]
AddTag = Callable[[str, str], Awaitable[Tag]]
AddUser = Callable[..., Awaitable[User]]
PostForm = Callable[..., Awaitable[ClientResponse]]
# (field name, file name, content, content type)
Upload = tuple[str, str, bytes, str]


class LogIn(Protocol):
    async def __call__(self, username: str, *, password: str = PASSWORD) -> None: ...


def form_token(html: str) -> str:
    """The CSRF token of the form in ``html``, which must have one: for tests that check
    a page renders it. A test that only needs a token uses aiosite.testing.csrf_token."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)
