"""Limits on requests: ``@rate_limit(...)`` on a handler or a view method, and
``check_rate_limit`` / ``hit_rate_limit`` inside a handler (docs/rate-limits.md)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Collection, Coroutine
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from aiohttp import hdrs, web

from aiosite.handlers import request_of
from aiosite.ratelimit.keys import RateLimitKey, by_address
from aiosite.ratelimit.limiter import RateLimitResult, parse_limit, rate_limiter_of

if TYPE_CHECKING:
    from limits import RateLimitItem

P = ParamSpec("P")
R = TypeVar("R")


def rate_limit(
    limit: str,
    *,
    key: RateLimitKey = by_address,
    methods: Collection[str] | None = None,
    scope: str | None = None,
    cost: int = 1,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """Allow ``limit`` requests (``"5/minute"``) per ``key`` to the handler (a function
    handler or a ``web.View`` method); the next get 429 with ``Retry-After``.

    ``methods``: only requests with these methods count (None: every method).
    ``scope``: the budget's name; routes with the same scope share one budget (default:
    the handler's own, its module and qualified name).
    """
    item = parse_limit(limit)
    _check_cost(cost, item.amount)
    counted = None if methods is None else frozenset(method.upper() for method in methods)

    def decorator(handler: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        budget = scope or f"{handler.__module__}.{handler.__qualname__}"

        @functools.wraps(handler)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            request = request_of(args, decorator="@rate_limit", handler=handler)
            if counted is None or request.method in counted:
                result = await _hit(request, item, key, budget, cost)
                if not result.allowed:
                    raise too_many_requests(result)
            return await handler(*args, **kwargs)

        return wrapper

    return decorator


async def hit_rate_limit(
    request: web.Request,
    limit: str,
    *,
    key: RateLimitKey = by_address,
    scope: str | None = None,
    cost: int = 1,
) -> RateLimitResult:
    """Count this request against ``limit`` and say whether it is allowed, without
    refusing it: for a handler that answers a refusal its own way. ``scope`` defaults
    to the route (its method and path pattern).

    Being over the limit is never raised, but an outage of the store can be: while a
    Redis store is down, ``ratelimit.fail_open: false`` raises 503 Service Unavailable
    (with ``Retry-After``) from here, as it does for ``@rate_limit``; ``fail_open:
    true`` (the default) returns an allowed result."""
    item = parse_limit(limit)
    _check_cost(cost, item.amount)
    return await _hit(request, item, key, scope or _route_scope(request), cost)


async def check_rate_limit(
    request: web.Request,
    limit: str,
    *,
    key: RateLimitKey = by_address,
    scope: str | None = None,
    cost: int = 1,
) -> RateLimitResult:
    """Count this request against ``limit``; over it, raise 429 Too Many Requests with
    ``Retry-After``, which the site answers with its error page (JSON for API clients)."""
    result = await hit_rate_limit(request, limit, key=key, scope=scope, cost=cost)
    if not result.allowed:
        raise too_many_requests(result)
    return result


async def _hit(
    request: web.Request, item: RateLimitItem, key: RateLimitKey, scope: str, cost: int
) -> RateLimitResult:
    limiter = rate_limiter_of(request)
    if not limiter.enabled:  # before the key, which may load the user and the session
        return RateLimitResult(True, str(item))
    identity = key(request)
    if inspect.isawaitable(identity):
        identity = await identity
    if identity is None:  # exempt
        return RateLimitResult(True, str(item))
    return await limiter.hit(item, scope, identity, cost=cost)


def too_many_requests(result: RateLimitResult) -> web.HTTPTooManyRequests:
    """The 429 for a refused hit: the limit and the wait in its text, ``Retry-After``."""
    seconds = result.retry_after
    wait = "1 second" if seconds == 1 else f"{seconds} seconds"
    return web.HTTPTooManyRequests(
        text=f"Too many requests: this allows {result.limit}. Try again in {wait}.",
        headers={hdrs.RETRY_AFTER: str(seconds)},
    )


def _route_scope(request: web.Request) -> str:
    resource = request.match_info.route.resource
    path = resource.canonical if resource is not None else request.path
    return f"{request.method} {path}"


def _check_cost(cost: int, amount: int) -> None:
    if not 1 <= cost <= amount:
        raise ValueError(f"cost must be between 1 and the limit's count ({amount}), not {cost}")
