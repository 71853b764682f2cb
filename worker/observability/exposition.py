"""Prometheus exposition of the shared store, through ``prometheus_client``.

``render`` and ``as_json`` turn a ``StoreCollector`` (``worker.observability.collector``) into
a page: full float precision, buckets in numeric order, the text format or OpenMetrics as the
scraper asks, or JSON.

``MetricsExporter`` is what the receiver's ``GET /metrics`` and ``idv-worker metrics`` use: its
own Redis clients with a bounded timeout and no retries, so an unreachable or hung Redis gives
``MetricsUnavailable`` within about ``IDV_METRICS_TIMEOUT_S``, never a hang.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, generate_latest

from worker.errors import IdvError
from worker.observability.broker import QueueProbe
from worker.observability.collector import (
    GaugeSample,
    GaugeSource,
    StoreCollector,
    register_gauge_source,
    registered_gauge_sources,
    unregister_gauge_source,
)
from worker.observability.store import RedisMetrics
from worker.redisio import RedisTarget, connect
from worker.settings import ObservabilitySettings

__all__ = [
    "GaugeSample",
    "GaugeSource",
    "MetricsExporter",
    "MetricsUnavailable",
    "StoreCollector",
    "as_json",
    "metrics_redis",
    "register_gauge_source",
    "registered_gauge_sources",
    "render",
    "render_text",
    "unregister_gauge_source",
]


class MetricsUnavailable(IdvError):
    """The metrics store (Redis) could not be read; ``reason`` is safe to log."""

    retryable = True

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


# ---------------------------------------------------------------- rendering


def _registry(collector: StoreCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def _reason(exc: redis.RedisError) -> str:
    return f"Redis unavailable ({type(exc).__name__})"


def render(collector: StoreCollector, accept: str | None = None) -> tuple[bytes, str]:
    """The page and its content type: OpenMetrics if ``accept`` asks for it, else text 0.0.4.

    Raises ``MetricsUnavailable`` when Redis cannot be read.
    """
    encoder, content_type = choose_encoder(accept or "")
    try:
        return encoder(_registry(collector)), content_type
    except redis.RedisError as exc:
        raise MetricsUnavailable(_reason(exc)) from None


def render_text(store: RedisMetrics) -> str:
    """The Prometheus text format of the store alone (no queues, no gauge sources)."""
    try:
        return generate_latest(_registry(StoreCollector(store, sources=()))).decode()
    except redis.RedisError as exc:
        raise MetricsUnavailable(_reason(exc)) from None


def as_json(collector: StoreCollector) -> dict[str, Any]:
    """Every family as JSON: ``{"families": [{name, type, help, samples: [...]}]}``."""
    try:
        metrics = list(collector.collect())
    except redis.RedisError as exc:
        raise MetricsUnavailable(_reason(exc)) from None
    return {
        "families": [
            {
                "name": m.name,
                "type": m.type,
                "help": m.documentation,
                "samples": [
                    {"name": s.name, "labels": dict(s.labels), "value": s.value} for s in m.samples
                ],
            }
            for m in metrics
        ]
    }


# ---------------------------------------------------------------- one process's exporter


def metrics_redis(url: str | RedisTarget, timeout: float) -> redis.Redis:
    """A client for scrapes: bounded timeouts and no retries (a hung Redis costs ~timeout)."""
    return connect(url, socket_timeout=timeout, retries=0, max_connections=4)


class MetricsExporter:
    """The metrics of the whole system as one process shows them (receiver, CLI)."""

    def __init__(
        self,
        settings: ObservabilitySettings,
        *,
        store: RedisTarget,
        namespace: str,
        broker: RedisTarget | str | None = None,
        queues: Sequence[str] = (),
        buckets: Sequence[str] = (),
        client: redis.Redis | None = None,
    ) -> None:
        """Metrics kept in the ``store`` Redis; queue lengths read from the ``broker`` (a Redis
        target, or a URL of another transport: then none). ``buckets`` are shown at 0 before
        their first call; ``client`` (kept open) replaces the store client."""
        timeout = settings.metrics_timeout_s
        self._owns_store = client is None
        self._store_client = client or metrics_redis(store, timeout)
        self._broker_client: redis.Redis | None = None
        probe = None
        if queues and (broker is None or isinstance(broker, RedisTarget)):
            if broker is not None and broker != store:
                self._broker_client = metrics_redis(broker, timeout)
            probe = QueueProbe(self._broker_client or self._store_client, queues)
        self.collector = StoreCollector(
            RedisMetrics(self._store_client, namespace),
            queues=probe,
            known={"bucket": tuple(buckets)},
        )

    @property
    def store_client(self) -> redis.Redis:
        return self._store_client

    @property
    def broker_client(self) -> redis.Redis:
        """The client of the broker's Redis (the store's when they are one)."""
        return self._broker_client or self._store_client

    def add_source(self, source: GaugeSource) -> None:
        """Add ``source`` to this exporter's scrapes (``worker.wiring.demand``)."""
        self.collector.add_source(source)

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        return render(self.collector, accept)

    def as_json(self) -> dict[str, Any]:
        return as_json(self.collector)

    def close(self) -> None:
        if self._owns_store:
            self._store_client.close()
        if self._broker_client is not None:
            self._broker_client.close()
