"""What one process has counted, as Prometheus families: plain Python numbers, turned
into exposition families for a scrape of this process or written to its multiprocess
files (aiosite.metrics.files)."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from aiosite.exceptions import one_line
from aiosite.probes import MetricSample, MetricsSource

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

logger = logging.getLogger("aiosite.metrics")

Kind = Literal["counter", "gauge", "histogram"]
LabelValues = tuple[str, ...]


@dataclass(slots=True)
class Family:
    """One metric: its label names, and per label values a counter's running total or a
    gauge's value, or a histogram's bucket counts (not cumulative; the last one is +Inf)
    and sum."""

    name: str  # a counter's without "_total"
    documentation: str
    kind: Kind
    labelnames: tuple[str, ...]
    bounds: tuple[float, ...] = ()
    values: dict[LabelValues, float] = field(default_factory=dict)
    buckets: dict[LabelValues, list[float]] = field(default_factory=dict)
    sums: dict[LabelValues, float] = field(default_factory=dict)

    def add_observations(
        self, labelvalues: LabelValues, buckets: Sequence[int], total: float
    ) -> None:
        mine = self.buckets.get(labelvalues)
        if mine is None:
            self.buckets[labelvalues] = [float(count) for count in buckets]
            self.sums[labelvalues] = total
            return
        for index, count in enumerate(buckets):
            mine[index] += count
        self.sums[labelvalues] += total


class Series:
    """The families of one site in one process, by name."""

    def __init__(self) -> None:
        self.families: dict[str, Family] = {}
        self._refused: set[str] = set()

    def family(
        self,
        name: str,
        documentation: str,
        kind: Kind,
        labelnames: tuple[str, ...],
        bounds: tuple[float, ...] = (),
    ) -> Family | None:
        """The family ``name``, made on first use; None (logged once) when it exists with
        another kind or other label names: Prometheus allows one shape per name."""
        found = self.families.get(name)
        if found is None:
            found = self.families[name] = Family(name, documentation, kind, labelnames, bounds)
        elif found.kind != kind or found.labelnames != labelnames:
            if name not in self._refused:
                self._refused.add(name)
                logger.warning(
                    "The metric %s is reported as a %s labelled %s and as a %s labelled %s; "
                    "only the first is kept",
                    name,
                    found.kind,
                    list(found.labelnames),
                    kind,
                    list(labelnames),
                )
            return None
        return found

    def read_sources(self, sources: Iterable[MetricsSource]) -> None:
        """Take the current values of the metrics sources (probes_of(app))."""
        for source in sources:
            try:
                samples = list(source())
            except Exception as exc:
                logger.warning("The metrics source %r failed: %s", source, one_line(exc))
                continue
            for sample in samples:
                self.take(sample)

    def take(self, sample: MetricSample) -> None:
        labels = sorted(sample.labels.items())
        name = sample.name.removesuffix("_total") if sample.kind == "counter" else sample.name
        family = self.family(
            name, sample.documentation, sample.kind, tuple(key for key, _ in labels)
        )
        if family is not None:
            # A counter's value is the source's running total in this process.
            family.values[tuple(value for _, value in labels)] = float(sample.value)

    def exposition(self) -> Iterator[Metric]:
        """The families as prometheus_client's, for this process's registry."""
        from prometheus_client.metrics_core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )
        from prometheus_client.utils import floatToGoString

        for family in self.families.values():
            labelnames = list(family.labelnames)
            if family.kind == "histogram":
                histogram = HistogramMetricFamily(
                    family.name, family.documentation, labels=labelnames
                )
                upper = [*map(floatToGoString, family.bounds), floatToGoString(math.inf)]  # type: ignore[no-untyped-call]
                for labelvalues, counts in family.buckets.items():
                    cumulative: list[tuple[str, float]] = []
                    running = 0.0
                    for le, count in zip(upper, counts, strict=True):
                        running += count
                        cumulative.append((le, running))
                    histogram.add_metric(
                        list(labelvalues), cumulative, sum_value=family.sums[labelvalues]
                    )
                yield histogram
                continue
            metric: CounterMetricFamily | GaugeMetricFamily
            if family.kind == "counter":
                metric = CounterMetricFamily(family.name, family.documentation, labels=labelnames)
            else:
                metric = GaugeMetricFamily(family.name, family.documentation, labels=labelnames)
            for labelvalues, value in family.values.items():
                metric.add_metric(list(labelvalues), value)
            yield metric


class SeriesCollector:
    """A prometheus_client collector of one site's ``Series`` (single-process mode)."""

    def __init__(self, series: Series) -> None:
        self.series = series

    def collect(self) -> Iterator[Metric]:
        return self.series.exposition()
