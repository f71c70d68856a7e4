"""The guard against a dearer default stack: which hooks a plaintext request runs.

    python -m tfb.hook_guard

Serves the benchmark's aiosite site (production settings, its default stack) on a real
socket, sends one request to /plaintext and to /json, and records with ``sys.setprofile``
every hook of the core that actually ran. Counting calls, not time, makes it exact on a
shared machine: it fails when a request runs a hook its route does not need (the CSRF
check on a GET route), runs one twice, or when the default stack grows a hook nobody
weighed here; the expected list below then has to change with it, in the same commit.
Part of ``make bench-check``, so of ``make test``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from aiosite import load_site
from aiosite.hooks import hooks_of

SITE = Path(__file__).resolve().parent / "aiosite_site"

# What a GET route of the default stack needs, in running order: the allowed-hosts and
# body-size checks, the session hook-up, the request metrics around the handler and,
# after it, the session's save check, the security headers and the metrics' count of a
# handler that raised. Nothing for CSRF (a safe method), nothing in debug off.
EXPECTED = {
    "request hook": ["aiosite.allowed_hosts", "aiosite.body_size", "aiosite.sessions"],
    "handler wrapper": ["aiosite.metrics"],
    # aiosite.metrics runs on every route (a handler of any route may raise): a call and
    # the truthiness of an empty dict, about 40 ns a request (timeit, on the 2-core
    # bench machine).
    "response hook": ["aiosite.sessions", "aiosite.security_headers", "aiosite.metrics"],
}
PATHS = ("/plaintext", "/json")


def code_of(hook: Any) -> CodeType:
    """The code object a call of ``hook`` runs: a function's, a bound method's, or the
    ``__call__`` of a callable object."""
    target = getattr(hook, "__func__", hook)
    code = getattr(target, "__code__", None)
    if code is None:
        code = type(hook).__call__.__code__
    assert isinstance(code, CodeType)
    return code


def every_hook(app: web.Application) -> dict[CodeType, tuple[str, str]]:
    """Each hook of the site's core by its code: (kind, name)."""
    hooks = hooks_of(app)
    found: dict[CodeType, tuple[str, str]] = {}
    for kind in (hooks.request_hooks, hooks.handler_wrappers, hooks.response_hooks):
        for name, hook in kind.for_routes(()):
            found[code_of(hook)] = (kind.kind, name)
    return found


class CallRecorder:
    """``sys.setprofile`` for a while: which of ``watched`` codes were called, in order."""

    def __init__(self, watched: dict[CodeType, tuple[str, str]]) -> None:
        self.watched = watched
        self.calls: list[tuple[str, str]] = []

    def _profile(self, frame: FrameType, event: str, arg: object) -> None:
        if event == "call":
            found = self.watched.get(frame.f_code)
            if found is not None:
                self.calls.append(found)

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        sys.setprofile(self._profile)
        try:
            yield
        finally:
            sys.setprofile(None)


async def hooks_run(path: str) -> list[tuple[str, str]]:
    app = load_site(SITE, "production")
    recorder = CallRecorder(every_hook(app))
    async with TestServer(app, host="127.0.0.1") as server, ClientSession() as client:
        url = server.make_url(path)
        async with client.get(url) as warm:  # first request: lazy set-up is not counted
            await warm.read()
        with recorder.recording():
            async with client.get(url) as response:
                await response.read()
        if response.status != 200:
            raise SystemExit(f"{path} answered {response.status}")
    return recorder.calls


def problems(path: str, calls: list[tuple[str, str]]) -> list[str]:
    found: list[str] = []
    for (kind, name), count in Counter(calls).items():
        if count > 1:
            found.append(f"{path}: the {kind} {name!r} ran {count} times")
    for kind, expected in EXPECTED.items():
        ran = [name for which, name in calls if which == kind]
        ran = list(dict.fromkeys(ran))
        if ran != expected:
            found.append(
                f"{path}: the {kind}s that ran were {ran}, expected {expected}: a hook the "
                "route does not need runs on it (give it routes=...), or the default stack "
                "changed and this guard (bench/tfb/hook_guard.py) must say so"
            )
    return found


def main(run: Callable[[str], Any] = asyncio.run) -> int:
    # The site's production settings need a secret key of their own and a database URL;
    # nothing here connects to the database.
    os.environ.setdefault("AIOSITE_SECURITY__SECRET_KEY", secrets.token_urlsafe(50))
    failed = False
    for path in PATHS:
        calls = run(hooks_run(path))
        found = problems(path, calls)
        names = ", ".join(name for _, name in calls)
        print(f"{'FAIL' if found else 'ok  '} aiosite {path}: {len(calls)} hooks ran ({names})")
        for problem in found:
            print(f"     {problem}")
        failed = failed or bool(found)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
