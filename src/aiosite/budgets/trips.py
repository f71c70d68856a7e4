"""What a budget's trip leaves behind: a count per route and kind (the metrics source of
``aiosite_budget_trips_total``) and a WARNING, at most one per route and kind a minute."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Literal

from aiosite.probes import MetricSample

logger = logging.getLogger("aiosite.budgets")

TripKind = Literal["timeout", "concurrency"]
METRIC = "aiosite_budget_trips_total"
_DOCUMENTATION = "Requests refused by a route's budget (timeout: 504, concurrency: 503)."
# Seconds between two warnings about the same route and kind: an overloaded route trips
# on every request, and one line a minute (with the count since) says as much.
LOG_INTERVAL = 60.0


class Trips:
    """The trips of one site in this process: running totals, and the throttled log."""

    def __init__(self, interval: float = LOG_INTERVAL) -> None:
        self.interval = interval
        self.totals: dict[tuple[str, TripKind], int] = {}
        # By route and kind: when the last warning was logged, and the trips since.
        self._logged: dict[tuple[str, TripKind], tuple[float, int]] = {}

    def expect(self, route: str, kind: TripKind) -> None:
        """Report ``route``'s count of ``kind`` from 0 on, before its first trip."""
        self.totals.setdefault((route, kind), 0)

    def trip(self, route: str, kind: TripKind, limit: str) -> None:
        key = (route, kind)
        self.totals[key] = self.totals.get(key, 0) + 1
        now = time.monotonic()
        last, held_back = self._logged.get(key, (-self.interval, 0))
        if now - last < self.interval:
            self._logged[key] = (last, held_back + 1)
            return
        self._logged[key] = (now, 0)
        since = f" ({held_back} more since the last warning about it)" if held_back else ""
        logger.warning("Budget of %s tripped: %s %s%s", route, kind, limit, since)

    def samples(self) -> Iterator[MetricSample]:
        """The metrics source: a running total per route and kind."""
        for (route, kind), total in list(self.totals.items()):
            yield MetricSample(
                METRIC, _DOCUMENTATION, "counter", total, {"route": route, "kind": kind}
            )
