"""Request ids: taken from ``X-Request-ID`` when sane, else generated; on every response."""

from __future__ import annotations

import contextvars
import itertools
import os
import re

from aiohttp import web
from multidict import istr

from aiosite.keys import REQUEST_ID

HEADER = istr("X-Request-ID")  # istr: looked up without case-folding on every request
_SANE = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}").fullmatch

# The id of the request being handled, for log records written while handling it.
current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar(
    "aiosite_request_id", default="-"
)


class RequestIdFactory:
    """A random per-process prefix and a counter: unique across workers and hosts, and
    far cheaper per request than a uuid4."""

    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex()
        self._counter = itertools.count(1)

    def __call__(self) -> str:
        return f"{self._prefix}-{next(self._counter):x}"


def request_id_for(request: web.Request, new_id: RequestIdFactory) -> str:
    incoming = request.headers.get(HEADER)
    request_id = incoming if incoming is not None and _SANE(incoming) else new_id()
    request[REQUEST_ID] = request_id
    current_request_id.set(request_id)
    return request_id
