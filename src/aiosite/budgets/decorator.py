"""``@budget(...)``: what one route may spend (docs/budgets.md)."""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

from aiosite.keys import MAX_BODY_SIZE

H = TypeVar("H", bound=Callable[..., Any])

# A handler attribute: the route's Budget.
BUDGET: Final = "aiosite_budget"


class Default(enum.Enum):
    """A field of ``budget`` left to the ``budgets:`` settings."""

    SITE = "the site's default"


SITE_DEFAULT: Final = Default.SITE
FromSite = Literal[Default.SITE]


@dataclass(frozen=True, slots=True)
class Budget:
    """A route's own limits; SITE_DEFAULT where the ``budgets:`` settings decide."""

    timeout: float | FromSite | None = SITE_DEFAULT
    concurrency: int | FromSite | None = SITE_DEFAULT


def budget(
    *,
    timeout: float | FromSite | None = SITE_DEFAULT,
    concurrency: int | FromSite | None = SITE_DEFAULT,
    max_body_size: int | None = None,
) -> Callable[[H], H]:
    """Limit what requests to this route may spend: at most ``timeout`` seconds in the
    handler (then 504), at most ``concurrency`` requests in it at once per process (the
    next get 503 with ``Retry-After``), bodies of at most ``max_body_size`` bytes (413
    before the body is read).

    On a handler function, a ``web.View`` class or one of its methods, and on top of
    decorators that use ``functools.wraps``. A limit left out keeps the site's default
    (``budgets:`` settings; the body size: ``server.client_max_size``); ``None`` turns
    the site's default timeout or concurrency off for this route.
    """
    if timeout is not SITE_DEFAULT and timeout is not None:
        timeout = _positive_seconds(timeout)
    if concurrency is not SITE_DEFAULT and concurrency is not None:
        concurrency = _positive_count(concurrency, "concurrency", "requests at once")
    if max_body_size is not None:
        max_body_size = _positive_count(max_body_size, "max_body_size", "bytes")
    limits = Budget(timeout=timeout, concurrency=concurrency)

    def decorator(handler: H) -> H:
        setattr(handler, BUDGET, limits)
        if max_body_size is not None:
            # The marker the security battery's body size hook reads (413 before reading).
            setattr(handler, MAX_BODY_SIZE, max_body_size)
        return handler

    return decorator


def _positive_seconds(value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(
            f"budget(timeout={value!r}): the timeout is a positive number of seconds, "
            "e.g. timeout=5.0, or None for no timeout"
        )
    return float(value)


def _positive_count(value: object, name: str, unit: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"budget({name}={value!r}): {name} is a whole number of {unit} of at least 1, or None"
        )
    return value
