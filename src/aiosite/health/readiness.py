"""``/readyz``: every readiness check of the site, run at once, each under its timeout.

A run takes pool connections (the database's, Redis's) for up to ``check_timeout``, and
anyone may probe: concurrent probes share the run in progress, and a finished run's
results answer the probes of the next ``health.cache_seconds``, so that a flood of probes
costs one run at a time, never a pool's worth of connections.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from aiosite.exceptions import one_line
from aiosite.probes import Readiness

logger = logging.getLogger("aiosite.health")

OK = "ok"


class ReadinessRunner:
    """Runs the checks and remembers which failed last time, so that a check that keeps
    failing is logged once when it starts to fail (and once when it recovers), not on
    every probe of a load balancer."""

    def __init__(
        self, checks: Mapping[str, Readiness], default_timeout: float, cache_seconds: float = 0.0
    ) -> None:
        self.checks = checks
        self.default_timeout = default_timeout
        self.cache_seconds = cache_seconds
        self._failing: dict[str, str] = {}
        self._running: asyncio.Task[dict[str, str]] | None = None
        self._last: dict[str, str] | None = None
        self._last_at = 0.0

    async def results(self) -> dict[str, str]:
        """The results for a probe: those of a run that finished within
        ``cache_seconds``, else of the run in progress, else of a new run."""
        last = self._last
        if last is not None and time.monotonic() - self._last_at < self.cache_seconds:
            return last
        running = self._running
        if running is None:
            running = self._running = asyncio.get_running_loop().create_task(
                self._run_shared(), name="aiosite readiness checks"
            )
        # A probe whose client went away must not cancel the others' run.
        return await asyncio.shield(running)

    async def _run_shared(self) -> dict[str, str]:
        try:
            results = await self.run()
        finally:
            self._running = None
        self._last, self._last_at = results, time.monotonic()
        return results

    async def run(self) -> dict[str, str]:
        """Each check's name and ``"ok"`` or ``"failed: <reason>"``, in name order."""
        names = sorted(self.checks)
        outcomes = await asyncio.gather(*(self._run_one(self.checks[name]) for name in names))
        results: dict[str, str] = {}
        for name, failure in zip(names, outcomes, strict=True):
            self._note(name, failure)
            results[name] = OK if failure is None else f"failed: {failure}"
        return results

    async def _run_one(self, readiness: Readiness) -> str | None:
        """None when the check passes, else why it failed, in one line."""
        seconds = readiness.timeout if readiness.timeout is not None else self.default_timeout
        try:
            async with asyncio.timeout(seconds) as deadline:
                await readiness.check()
        except TimeoutError as exc:
            if deadline.expired():
                return f"no answer within {seconds:g} s"
            return one_line(exc)
        except Exception as exc:
            return one_line(exc)
        return None

    def _note(self, name: str, failure: str | None) -> None:
        before = self._failing.get(name)
        if failure is None:
            if before is not None:
                del self._failing[name]
                logger.info("Readiness check %r passes again", name)
            return
        if before is None:
            logger.warning("Readiness check %r failed: %s", name, failure)
        self._failing[name] = failure
