"""One site's metrics in one process: the request tallies, the series they fold into,
the metrics sources, and the task that folds (and, in multiprocess mode, writes) them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from aiosite.metrics.files import SeriesFiles, collect_all
from aiosite.metrics.recorder import RequestRecorder
from aiosite.metrics.series import Series, SeriesCollector
from aiosite.probes import Probes

logger = logging.getLogger("aiosite.metrics")


class SiteMetrics:
    def __init__(self, probes: Probes, bounds: tuple[float, ...], flush_interval: float) -> None:
        self.probes = probes
        self.recorder = RequestRecorder(bounds)
        self.series = Series()
        self.flush_interval = flush_interval
        # Set when the site starts in multiprocess mode (PROMETHEUS_MULTIPROC_DIR).
        self.files: SeriesFiles | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self, directory: Path | None) -> None:
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            self.files = SeriesFiles(directory)
        self._task = asyncio.get_running_loop().create_task(
            self._flush_forever(), name="aiosite metrics"
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.flush()
        if self.files is not None:
            self.files.close()
            self.files = None

    def flush(self) -> None:
        """Fold the request tallies into the series; in multiprocess mode read the
        sources too and write what changed to this process's files."""
        self.recorder.fold(self.series)
        if self.files is not None:
            self.series.read_sources(self.probes.metrics_sources)
            self.files.write(self.series)

    async def exposition(self) -> bytes:
        """The text a scrape gets: this process's series, or every worker's files."""
        if self.files is None:
            self.recorder.fold(self.series)
            self.series.read_sources(self.probes.metrics_sources)
            return _render(self.series)
        self.flush()
        # Reading every worker's files is blocking I/O.
        return await asyncio.to_thread(collect_all, self.files.directory)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            try:
                self.flush()
            except Exception:
                logger.exception("Writing the metrics failed")


def _render(series: Series) -> bytes:
    from prometheus_client import CollectorRegistry, generate_latest

    # A registry per scrape, never prometheus_client's global one: two sites in one
    # process each report their own.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SeriesCollector(series))
    return generate_latest(registry)
