"""The ``prometheus_client`` collector over the shared store, and the gauge sources it reads.

``StoreCollector`` is a custom collector: at each scrape it reads the Redis store (one round
trip), the broker queues (one more) and the registered gauge sources, and yields one family per
registered family (``families.FAMILIES``, alerting series at 0 from the start) plus any other
family found in the store. ``worker.observability.exposition`` renders it.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    UnknownMetricFamily,
)
from prometheus_client.utils import floatToGoString

from worker.observability.broker import QueueProbe, QueueStat
from worker.observability.families import FAMILIES, Family, FamilyRegistry
from worker.observability.store import (
    DEFAULT_BUCKETS,
    RedisMetrics,
    check_labels,
    metric_name,
    parse_series,
)

GaugeSample = tuple[str, Mapping[str, str], float]
GaugeSource = Callable[[], Iterable[GaugeSample]]
Labels = tuple[tuple[str, str], ...]

_log = logging.getLogger("idv.metrics")
_sources_lock = threading.Lock()
_sources: list[GaugeSource] = []


def register_gauge_source(source: GaugeSource, *families: Family) -> None:
    """Add ``source`` to every scrape of this process: a callable returning
    ``(name, labels, value)`` samples (ledger backlog, archival lag, …), with the families
    it emits (for their help text and type). A source that raises is logged and skipped."""
    for family in families:
        FAMILIES.register(family)
    with _sources_lock:
        if source not in _sources:
            _sources.append(source)


def unregister_gauge_source(source: GaugeSource) -> None:
    with _sources_lock:
        if source in _sources:
            _sources.remove(source)


def registered_gauge_sources() -> list[GaugeSource]:
    with _sources_lock:
        return list(_sources)


class _Series:
    """Series of one scrape grouped by family."""

    def __init__(self) -> None:
        self.counters: dict[str, dict[Labels, float]] = defaultdict(dict)
        self.gauges: dict[str, dict[Labels, float]] = defaultdict(dict)
        self.buckets: dict[str, dict[Labels, dict[float, float]]] = defaultdict(
            lambda: defaultdict(dict)
        )
        self.sums: dict[str, dict[Labels, float]] = defaultdict(dict)

    def add_counter(self, key: str, value: float) -> None:
        parsed = parse_series(key)
        if parsed is None:
            return
        name, labels = parsed
        if name.endswith("_total"):
            series = self.counters[name[: -len("_total")]]
            lab = _labels(labels)
            series[lab] = series.get(lab, 0.0) + value  # legacy unprefixed names merge here
        elif name.endswith("_bucket") and "le" in labels:
            bound = _bound(labels.pop("le"))
            if bound is not None:
                buckets = self.buckets[name[: -len("_bucket")]][_labels(labels)]
                buckets[bound] = buckets.get(bound, 0.0) + value
        elif name.endswith("_sum"):
            sums = self.sums[name[: -len("_sum")]]
            lab = _labels(labels)
            sums[lab] = sums.get(lab, 0.0) + value
        # ``_count`` is derived from the +Inf bucket (OpenMetrics requires them equal)

    def add_gauge(self, key: str, value: float) -> None:
        parsed = parse_series(key)
        if parsed is not None:
            self.gauges[parsed[0]][_labels(parsed[1])] = value


def _labels(labels: Mapping[str, str]) -> Labels:
    return tuple(sorted(labels.items()))


def _bound(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return None if math.isnan(value) else value


class StoreCollector:
    """A ``prometheus_client`` collector over the shared store (see the module docstring)."""

    def __init__(
        self,
        store: RedisMetrics,
        *,
        queues: QueueProbe | None = None,
        sources: Sequence[GaugeSource] | None = None,
        families: FamilyRegistry = FAMILIES,
        known: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.store = store
        self.queues = queues
        self._sources = sources
        self._extra: list[GaugeSource] = []
        self.families = families
        self.known = dict(known or {})
        if queues is not None:
            self.known.setdefault("queue", queues.queues)

    def describe(self) -> list[Metric]:
        return []  # no read at registration time

    def add_source(self, source: GaugeSource) -> None:
        """Read ``source`` at every scrape of this collector (besides the registered ones)."""
        self._extra.append(source)

    def collect(self) -> Iterator[Metric]:
        """Read everything first (Redis errors surface before any output), then yield."""
        counters, gauges = self.store.read()
        stats = self.queues.read() if self.queues is not None else []
        series = _Series()
        for key, value in counters.items():
            series.add_counter(key, value)
        for key, value in gauges.items():
            series.add_gauge(key, value)
        for name, labels, value in self._queue_samples(stats):
            series.gauges[name][_labels(labels)] = value
        for name, labels, value in self._source_samples():
            series.gauges[name][_labels(labels)] = value
        yield from self._families(series)

    # ------------------------------------------------------------ sources

    @staticmethod
    def _queue_samples(stats: Iterable[QueueStat]) -> Iterator[GaugeSample]:
        for stat in stats:
            yield "idv_queue_length", {"queue": stat.queue}, float(stat.length)
            if stat.oldest_age_s is not None:
                yield "idv_queue_oldest_age_seconds", {"queue": stat.queue}, stat.oldest_age_s

    def _source_samples(self) -> Iterator[GaugeSample]:
        sources = registered_gauge_sources() if self._sources is None else self._sources
        for source in [*sources, *self._extra]:
            try:
                samples = [
                    (metric_name(name), dict(labels), float(value))
                    for name, labels, value in source()
                ]
                for _, labels, _ in samples:
                    check_labels(labels)
            except Exception as exc:
                what = getattr(source, "__qualname__", type(source).__name__)
                _log.warning("gauge source %s failed: %s", what, type(exc).__name__)
                continue
            yield from samples

    # ------------------------------------------------------------ families

    def _families(self, series: _Series) -> Iterator[Metric]:
        names = (
            {f.name for f in self.families}
            | set(series.counters)
            | set(series.gauges)
            | set(series.buckets)
        )
        for name in sorted(names):
            family = self.families.get(name) or _unregistered(name, series)
            if family.kind == "counter":
                yield self._counter(family, series.counters.get(name, {}))
            elif family.kind == "gauge":
                yield self._gauge(family, series.gauges.get(name, {}))
            else:
                yield self._histogram(
                    family, series.buckets.get(name, {}), series.sums.get(name, {})
                )

    def _with_zeros(
        self, family: Family, values: Mapping[Labels, Any], zero: Any
    ) -> dict[Labels, Any]:
        out = dict(values)
        for labels in family.initial(self.known):
            out.setdefault(_labels(labels), zero)
        return out

    @staticmethod
    def _label_names(family: Family, keys: Iterable[Labels]) -> list[str]:
        names = list(family.labels)
        extra = sorted({k for labels in keys for k, _ in labels} - set(names))
        return names + extra

    def _counter(self, family: Family, values: Mapping[Labels, float]) -> Metric:
        values = self._with_zeros(family, values, 0.0)
        label_names = self._label_names(family, values)
        metric = CounterMetricFamily(family.name, family.help, labels=label_names)
        for labels, value in sorted(values.items()):
            metric.add_metric(_values(label_names, labels), value)
        return metric

    def _gauge(self, family: Family, values: Mapping[Labels, float]) -> Metric:
        if family.zero:
            values = self._with_zeros(family, values, 0.0)
        label_names = self._label_names(family, values)
        cls = GaugeMetricFamily if family.kind == "gauge" else UnknownMetricFamily
        metric = cls(family.name, family.help, labels=label_names)
        for labels, value in sorted(values.items()):
            metric.add_metric(_values(label_names, labels), value)
        return metric

    def _histogram(
        self,
        family: Family,
        buckets: Mapping[Labels, Mapping[float, float]],
        sums: Mapping[Labels, float],
    ) -> Metric:
        all_buckets = self._with_zeros(family, buckets, {})
        label_names = self._label_names(family, all_buckets)
        metric = HistogramMetricFamily(family.name, family.help, labels=label_names)
        for labels, counts in sorted(all_buckets.items()):
            metric.add_metric(
                _values(label_names, labels),
                _cumulative(counts),
                sum_value=sums.get(labels, 0.0),
            )
        return metric


def _values(names: Sequence[str], labels: Labels) -> list[str]:
    given = dict(labels)
    return [given.get(name, "") for name in names]


def _cumulative(counts: Mapping[float, float]) -> list[tuple[str, float]]:
    """Buckets in numeric order with +Inf last, never decreasing (OpenMetrics requires it)."""
    bounds = sorted({*map(float, DEFAULT_BUCKETS), *counts, math.inf})
    out: list[tuple[str, float]] = []
    running = 0.0
    for bound in bounds:
        running = max(running, counts.get(bound, 0.0))
        out.append((floatToGoString(bound), running))  # type: ignore[no-untyped-call]
    return out


def _unregistered(name: str, series: _Series) -> Family:
    help_text = "idv metric without a registered description"
    if name in series.counters:
        return Family(name, "counter", help_text)
    if name in series.buckets:
        return Family(name, "histogram", help_text)
    return Family(name, "gauge", help_text, zero=False)
