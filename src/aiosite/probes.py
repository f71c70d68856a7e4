"""What a site reports about itself: readiness checks and metrics sources.

Batteries and apps register here while the site is assembled (in ``setup(app, settings,
registry)``); the health battery runs the readiness checks for ``/readyz`` and the metrics
battery reads the sources for ``/metrics``. Neither knows the batteries it reports on::

    probes = probes_of(app)
    probes.add_readiness_check("search", ping_search_engine)
    probes.add_metrics_source(lambda: [MetricSample("myext_queue_depth", "Jobs waiting.",
                                                    "gauge", queue.qsize())])
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web

from aiosite.exceptions import ImproperlyConfigured

# Raises (any exception, whose message is shown) when what it checks is not ready.
ReadinessCheck = Callable[[], Awaitable[None]]
MetricKind = Literal["gauge", "counter"]


@dataclass(frozen=True, slots=True)
class MetricSample:
    """One number a source reports: a gauge's current value, or a counter's running total
    in this process (the metrics battery turns totals into increments)."""

    name: str
    documentation: str
    kind: MetricKind
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)


# Called when metrics are collected (at most about once a second per process): cheap, no I/O.
MetricsSource = Callable[[], Iterable[MetricSample]]


@dataclass(frozen=True, slots=True)
class Readiness:
    name: str
    check: ReadinessCheck
    # Seconds the check may take before it counts as failed (None: the site's default).
    timeout: float | None


class Probes:
    """The site's readiness checks and metrics sources; ``probes_of(app)``."""

    def __init__(self) -> None:
        self.readiness_checks: dict[str, Readiness] = {}
        self.metrics_sources: list[MetricsSource] = []

    def add_readiness_check(
        self, name: str, check: ReadinessCheck, *, timeout: float | None = None
    ) -> None:
        """Have ``/readyz`` await ``check()``: the site is not ready while it raises."""
        if name in self.readiness_checks:
            raise ImproperlyConfigured(f"a readiness check named {name!r} is already registered")
        self.readiness_checks[name] = Readiness(name, check, timeout)

    def add_metrics_source(self, source: MetricsSource) -> None:
        """Have ``/metrics`` report the samples ``source()`` returns."""
        self.metrics_sources.append(source)


PROBES: web.AppKey[Probes] = web.AppKey("aiosite.probes", Probes)


def probes_of(app: web.Application) -> Probes:
    """The site's probes, to register on while the site is assembled."""
    try:
        return app[PROBES]
    except KeyError:
        raise RuntimeError(
            "this application has no aiosite probes; build it with aiosite's create_site"
        ) from None


__all__ = [
    "PROBES",
    "MetricKind",
    "MetricSample",
    "MetricsSource",
    "Probes",
    "ReadinessCheck",
    "probes_of",
]
