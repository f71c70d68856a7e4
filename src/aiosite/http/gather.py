"""Fan-out: calls to several upstreams at once, under one deadline for them all.

::

    gathered = await gather_upstreams(
        request,
        {"weather": lambda: weather_today(request), "news": top_news(request)},
        deadline=2.0,
    )
    return json_response(gathered.as_json())

With ``partial=True`` (the default) the answer has what came back in time; each call
that failed or missed the deadline is in ``gathered.errors`` as an ``UpstreamError``
(the latecomers are cancelled, as ``UpstreamTimeout``). With ``partial=False`` the first
failure is raised, so that the site answers 502/503/504 for the whole request.

A call cancelled here (at the deadline, or for a sibling's failure) is reported as an
``UpstreamTimeout`` but not counted by its service's circuit breaker: the deadline is the
caller's, and the upstream may be fine.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, TypeVar

from aiohttp import web

from aiosite.http.errors import UpstreamError, UpstreamTimeout

logger = logging.getLogger("aiosite.http")

T = TypeVar("T")
# A call: an awaitable (a coroutine, ``service(...).get(...)``) or a function that makes
# one when called.
UpstreamCall = Awaitable[T] | Callable[[], Awaitable[T]]


class Gathered(Mapping[str, T]):
    """The results of a fan-out by name, and ``errors``: the calls that failed."""

    __slots__ = ("_results", "errors")

    def __init__(self, results: dict[str, T], errors: dict[str, UpstreamError]) -> None:
        self._results = results
        self.errors: Mapping[str, UpstreamError] = errors

    def __getitem__(self, name: str) -> T:
        return self._results[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._results)

    def __len__(self) -> int:
        return len(self._results)

    @property
    def complete(self) -> bool:
        """Whether every call succeeded."""
        return not self.errors

    def as_json(self) -> dict[str, Any]:
        """``{"results": {name: result}, "errors": {name: {"status": 504, "error":
        "..."}}}``, for a JSON answer (the results must be JSON themselves)."""
        return {
            "results": dict(self._results),
            "errors": {name: error.as_json() for name, error in self.errors.items()},
        }

    def __repr__(self) -> str:
        return f"Gathered(results={self._results!r}, errors={dict(self.errors)!r})"


async def gather_upstreams(
    target: web.Request | web.Application,
    calls: Mapping[str, UpstreamCall[T]],
    *,
    deadline: float,
    partial: bool = True,
) -> Gathered[T]:
    """Run ``calls`` concurrently, all within ``deadline`` seconds.

    An exception that is not an ``UpstreamError`` (a bug in a call) is raised in both
    modes, once the other calls are cancelled. Whatever is raised, a coroutine passed
    in that never started is closed.
    """
    tasks: dict[str, asyncio.Future[T]] = {}
    try:
        if deadline <= 0:
            raise ValueError(f"gather_upstreams: the deadline must be positive, not {deadline}")
        for name, call in calls.items():
            tasks[name] = asyncio.ensure_future(call() if callable(call) else call)
        if not tasks:
            return Gathered({}, {})
        done = await _wait(set(tasks.values()), deadline, partial)
        results: dict[str, T] = {}
        failed: dict[str, UpstreamError] = {}
        missed: dict[str, UpstreamError] = {}
        bug: BaseException | None = None
        for name, task in tasks.items():
            if task not in done or task.cancelled():
                missed[name] = _missed(name, deadline)
                continue
            failure = task.exception()
            if failure is None:
                results[name] = task.result()
            elif isinstance(failure, UpstreamError):
                failed[name] = failure
            else:
                bug = bug or failure
        if bug is not None:
            raise bug
        if not partial and (failed or missed):
            # What failed, rather than what the failure left unfinished.
            raise next(iter((failed or missed).values()))
        errors = {name: failed.get(name) or missed[name] for name in tasks if name not in results}
        for name, error in errors.items():
            _log(target, name, error)
        return Gathered(results, errors)
    finally:
        for name, call in calls.items():
            if name not in tasks and inspect.iscoroutine(call):
                call.close()  # never started: no "never awaited" warning
        await _cancel([task for task in tasks.values() if not task.done()])


async def _wait(
    pending: set[asyncio.Future[T]], deadline: float, partial: bool
) -> set[asyncio.Future[T]]:
    """The calls done by the deadline, or by the first failure that ends the fan-out
    (any failure without ``partial``; with it, a bug)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    finished: set[asyncio.Future[T]] = set()
    while pending:
        left = end - loop.time()
        if left <= 0:
            break
        done, pending = await asyncio.wait(
            pending, timeout=left, return_when=asyncio.FIRST_EXCEPTION
        )
        finished |= done
        if any(_ends_fan_out(task, partial) for task in done):
            break
    return finished


def _ends_fan_out(task: asyncio.Future[T], partial: bool) -> bool:
    if task.cancelled():
        return False
    failure = task.exception()
    return failure is not None and (not partial or not isinstance(failure, UpstreamError))


def _missed(name: str, deadline: float) -> UpstreamTimeout:
    return UpstreamTimeout(
        name,
        f"The {name} service did not answer in time.",
        cause=f"no answer within the fan-out's deadline of {deadline} s",
    )


async def _cancel(pending: list[asyncio.Future[T]]) -> None:
    """Cancel ``pending`` and wait until each has ended (given back its connection)."""
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    for task in pending:
        if not task.cancelled():
            task.exception()  # retrieved: what failed as it was cancelled is not news


def _log(target: web.Request | web.Application, name: str, error: UpstreamError) -> None:
    if isinstance(target, web.Request):
        where = f"left out of the answer to {target.method} {target.path}"
    else:
        where = "left out of the fan-out's results"
    logger.warning("Upstream %s (%s, as %r); %s", error.describe(), error.status, name, where)
