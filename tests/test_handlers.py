"""``aiosite.request_of``: the request of a handler function's call or a view method's."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from aiosite import request_of


def test_the_request_is_a_handler_functions_first_argument_or_a_views() -> None:
    request = make_mocked_request("GET", "/")
    assert request_of((request, "more")) is request
    assert request_of((web.View(request),)) is request


async def not_a_handler(number: int) -> None:
    pass


@pytest.mark.parametrize("args", [(), (42,)])
def test_anything_else_names_the_decorator_and_the_handler(args: tuple[object, ...]) -> None:
    expected = (
        "not_a_handler: @audited goes on handlers that take the request, or on the "
        "methods of a web.View"
    )
    with pytest.raises(TypeError, match=expected):
        request_of(args, decorator="@audited", handler=not_a_handler)
