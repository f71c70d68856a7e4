"""The ``metrics:`` settings section."""

from __future__ import annotations

import itertools
import math

from pydantic import Field, IPvAnyNetwork, field_validator

from aiosite.settings import Section

# For web requests: a millisecond (a cached page) to ten seconds (a budget's timeout).
DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class MetricsSettings(Section):
    """Prometheus metrics at ``/metrics`` (docs/health-and-metrics.md)."""

    enabled: bool = True
    path: str = "/metrics"
    # The client addresses (networks) that may read the metrics; others get 403. Behind
    # a proxy, the client is the proxy unless security.trust_proxy_headers is on.
    allow: tuple[IPvAnyNetwork, ...] = Field(
        default=("127.0.0.0/8", "::1/128"), validate_default=True
    )
    # Where `aiosite serve` has its workers write their metrics (relative to the
    # project): each server in a subdirectory of its own, named by its master's pid.
    multiprocess_dir: str = "var/prometheus"
    # Upper bounds (seconds) of aiosite_request_duration_seconds's buckets.
    buckets: tuple[float, ...] = DEFAULT_BUCKETS
    # Seconds between the moves of the request counts into the multiprocess files (a
    # scrape of the process moves its own first).
    flush_interval: float = Field(default=1.0, gt=0)

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"a path starting with '/', e.g. '/{value}'")
        return value

    @field_validator("buckets")
    @classmethod
    def _increasing(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value:
            raise ValueError("at least one bucket bound, e.g. [0.01, 0.1, 1.0]")
        if any(not math.isfinite(b) or b <= 0 for b in value):
            raise ValueError("bucket bounds are positive numbers of seconds (+Inf is implied)")
        if any(a >= b for a, b in itertools.pairwise(value)):
            raise ValueError("bucket bounds must increase, e.g. [0.01, 0.1, 1.0]")
        return value
