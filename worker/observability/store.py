"""The shared metrics store: counters, gauges and histograms kept in Redis hashes.

Every process on every host adds to the same series, so one scrape of any receiver (or
``idv-worker metrics``) shows the whole system. Writers use ``incr`` / ``observe`` / ``gauge``;
``collector`` (which imports this module, never the reverse) turns a snapshot into
Prometheus families.

Series are stored as ``name{label="value",...}`` fields. Every name is in the ``idv_`` namespace:
a name given without the prefix gets it (``limiter_throttled`` is stored as
``idv_limiter_throttled_total``). Label names come from a closed set and values from a strict
charset, so an ID number or a URL can never become a label.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Protocol

import redis

PREFIX = "idv_"
ALLOWED_LABELS = frozenset(
    {
        "lane",
        "product",
        "api",
        "code",
        "outcome",
        "kind",
        "queue",
        "reason",
        "flow",
        "bucket",
        "le",
        "state",
    }
)
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9_.:+\-]{0,64}$")
_METRIC_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_SERIES = re.compile(r"^([a-z_][a-z0-9_]*)(?:\{(.*)\})?$")
_LABEL_PAIR = re.compile(r'([a-z_]+)="([^"]*)"')
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)

_log = logging.getLogger("idv.metrics")


class Metrics(Protocol):
    def incr(self, name: str, value: float = 1, **labels: str) -> None: ...

    def observe(self, name: str, value: float, **labels: str) -> None: ...

    def gauge(self, name: str, value: float, **labels: str) -> None: ...


def metric_name(name: str) -> str:
    """``name`` in the ``idv_`` namespace (checked)."""
    if not _METRIC_NAME.match(name):
        raise ValueError(f"bad metric name {name!r}")
    return name if name.startswith(PREFIX) else PREFIX + name


def check_labels(labels: Mapping[str, str]) -> None:
    """Raise ``ValueError`` for a label name outside the closed set or an unsafe value."""
    for key, val in labels.items():
        if key not in ALLOWED_LABELS:
            raise ValueError(f"label {key!r} is not an allowed metric label")
        if not _LABEL_VALUE.match(val):
            raise ValueError(f"label {key} has a value that is not a safe identifier")


def series_key(name: str, labels: Mapping[str, str]) -> str:
    """The stored field of one series: ``idv_name{a="x",b="y"}`` (labels sorted)."""
    name = metric_name(name)
    check_labels(labels)
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}" if inner else name


def parse_series(key: str) -> tuple[str, dict[str, str]] | None:
    """Name (in the ``idv_`` namespace) and labels of a stored field; None if malformed."""
    match = _SERIES.match(key)
    if match is None:
        return None
    labels = dict(_LABEL_PAIR.findall(match.group(2) or ""))
    return metric_name(match.group(1)), labels


class NullMetrics:
    """Checks names and labels, stores nothing (unit tests of pure logic, tools)."""

    def incr(self, name: str, value: float = 1, **labels: str) -> None:
        series_key(name, labels)

    def observe(self, name: str, value: float, **labels: str) -> None:
        series_key(name, labels)

    def gauge(self, name: str, value: float, **labels: str) -> None:
        series_key(name, labels)


class RedisMetrics:
    """Counters, gauges and histograms shared by all processes, stored in Redis hashes.

    A metric write never fails the work it measures: Redis errors are swallowed (and logged
    at debug level); the limiter and stores already fail loudly on their own.
    """

    def __init__(self, client: redis.Redis, namespace: str = "idv:") -> None:
        self._r = client
        self.counters_key = f"{namespace}metrics:counters"
        self.gauges_key = f"{namespace}metrics:gauges"

    def incr(self, name: str, value: float = 1, **labels: str) -> None:
        key = series_key(name + "_total", labels)
        try:
            self._r.hincrbyfloat(self.counters_key, key, value)
        except redis.RedisError:
            _log.debug("metric write failed", exc_info=True)

    def gauge(self, name: str, value: float, **labels: str) -> None:
        key = series_key(name, labels)
        try:
            self._r.hset(self.gauges_key, key, repr(float(value)))
        except redis.RedisError:
            _log.debug("metric write failed", exc_info=True)

    def observe(self, name: str, value: float, **labels: str) -> None:
        pipe = self._r.pipeline(transaction=False)
        bounds = [str(b) for b in DEFAULT_BUCKETS if value <= b] + ["+Inf"]
        for bound in bounds:
            pipe.hincrbyfloat(
                self.counters_key, series_key(name + "_bucket", {**labels, "le": bound}), 1
            )
        pipe.hincrbyfloat(self.counters_key, series_key(name + "_sum", labels), value)
        pipe.hincrbyfloat(self.counters_key, series_key(name + "_count", labels), 1)
        try:
            pipe.execute()
        except redis.RedisError:
            _log.debug("metric write failed", exc_info=True)

    def read(self) -> tuple[dict[str, float], dict[str, float]]:
        """Counters (histogram parts included) and gauges, in one round trip.

        Raises ``redis.RedisError``: a reader must know the store is unreachable.
        """
        pipe = self._r.pipeline(transaction=False)
        pipe.hgetall(self.counters_key)
        pipe.hgetall(self.gauges_key)
        counters, gauges = pipe.execute()
        return _floats(counters), _floats(gauges)

    def snapshot(self) -> dict[str, float]:
        """All series and their values (counters and gauges)."""
        counters, gauges = self.read()
        return {**counters, **gauges}


def _floats(raw: Mapping[bytes | str, bytes | str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, val in raw.items():
        name = key.decode() if isinstance(key, bytes) else key
        try:
            out[name] = float(val)
        except ValueError:
            continue
    return out
