"""``idv_lane_desired_workers{lane}`` at each scrape: the inputs read from Redis, the arithmetic
in ``worker.observability.demand``.

A queue-length autoscaler sees only messages waiting in the broker. This source also counts
what it cannot see: messages a worker holds (reserved, running, or delayed: kombu's ``unacked``
hash), the ledger's overdue work (the reconciler re-drives it), and the rows of running
batches (a chunk message stands for hundreds of rows). Service time per item comes from the
task duration and limiter wait histograms between two scrapes; quotas from the limiter's table
with its current rate factor, and for archival the share realtime work leaves it
(``IDV_ARCHIVE_REALTIME_RESERVE``).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import redis

from worker.batch import BatchState, BatchStore
from worker.cloudauth import DEFAULT_QUOTAS
from worker.keys import RedisKeys
from worker.ledger import Ledger
from worker.observability.broker import QueueProbe
from worker.observability.collector import GaugeSample
from worker.observability.demand import (
    DESIRED_WORKERS,
    Demand,
    LaneLoad,
    Reading,
    ServiceTime,
    desired,
)
from worker.observability.store import RedisMetrics, parse_series
from worker.queues import QUEUE_ARCHIVAL, QUEUE_BULK, QUEUE_REALTIME, QUEUE_WEBHOOKS
from worker.ratelimit import QuotaTable
from worker.settings import Settings

UNACKED = "unacked"  # kombu's Redis transport: messages delivered and not acknowledged yet
BATCHES_READ = 100  # newest batches whose rows count (older ones are long finished)
# Service time per item until one is observed (seconds).
DEFAULT_SERVICE_S = {"realtime": 2.0, "webhooks": 0.5, "archival": 1.0, "bulk": 0.5}
_QUEUES = {
    "realtime": QUEUE_REALTIME,
    "webhooks": QUEUE_WEBHOOKS,
    "archival": QUEUE_ARCHIVAL,
    "bulk": QUEUE_BULK,
}
_FLOWS = {"realtime": "onboarding", "webhooks": "webhook", "archival": "archival", "bulk": "batch"}


class DemandSource:
    """A gauge source (``MetricsExporter.add_source``) of ``idv_lane_desired_workers``."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: redis.Redis,
        broker: redis.Redis | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._store = store
        self._broker = broker or store
        self._clock = clock
        keys = RedisKeys(settings.redis.namespace)
        self._metrics = RedisMetrics(store, settings.redis.namespace)
        self._ledger = Ledger(
            store, keys, settings.ledger, evidence_window_s=settings.onboarding.evidence_window_s
        )
        self._batches = BatchStore(store, keys, settings.batch, clock=clock)
        self._probe = QueueProbe(self._broker, tuple(_QUEUES.values()), clock=clock)
        self._quotas = QuotaTable(settings.quotas, DEFAULT_QUOTAS)
        self._times = {lane: ServiceTime(s) for lane, s in DEFAULT_SERVICE_S.items()}

    def __call__(self) -> list[GaugeSample]:
        return [(DESIRED_WORKERS, {"lane": d.lane}, float(d.workers)) for d in self.demands()]

    def demands(self) -> list[Demand]:
        return [desired(load) for load in self.loads()]

    def loads(self) -> list[LaneLoad]:
        """Each lane's load now (reads Redis; raises ``redis.RedisError``)."""
        counters, gauges = self._metrics.read()
        series = list(_parsed(counters))
        waiting = {s.queue: s.length for s in self._probe.read()}
        held = self._held()
        now = self._clock()
        due = {
            queue: int(cast("int", self._store.zcount(self._ledger.index_key(queue), "-inf", now)))
            for queue in ("rt", "ar")
        }
        obs = self.settings.observability
        loads = []
        for lane, queue in _QUEUES.items():
            if lane == "bulk":
                backlog, in_flight = self._rows_left(), 0
            else:
                overdue = {"realtime": due["rt"], "archival": due["ar"]}.get(lane, 0)
                backlog = waiting.get(queue, 0) + overdue
                in_flight = held.get(queue, 0)
            loads.append(
                LaneLoad(
                    lane=lane,
                    backlog=backlog,
                    in_flight=in_flight,
                    seconds_per_item=self._times[lane].update(_reading(series, lane)),
                    drain_s=obs.scale_drain_s[lane],
                    quota=self._quota(lane, gauges),
                    concurrency=obs.worker_concurrency[lane],
                )
            )
        return loads

    def _held(self) -> Counter[str]:
        """Messages workers hold, by queue (kombu records the routing key of each)."""
        held: Counter[str] = Counter()
        for raw in cast("list[bytes]", self._broker.hvals(UNACKED)):
            try:
                held[str(json.loads(raw)[2])] += 1
            except (ValueError, IndexError, TypeError):
                continue
        return held

    def _rows_left(self) -> int:
        left = 0
        for batch_id in self._batches.list_ids(BATCHES_READ):
            progress = self._batches.progress(batch_id)
            if progress.state is BatchState.RUNNING:
                left += progress.remaining
        return left

    def _quota(self, lane: str, gauges: Mapping[str, float]) -> float | None:
        if lane == "webhooks":
            return None
        product: str
        if lane == "bulk":
            product, api, share = self.settings.batch.batch_product_code, "DocOcrV2", 1.0
        else:
            product, api = self.settings.onboarding.onboarding_product, "CheckResult"
            reserve = self.settings.ledger.archive_realtime_reserve
            share = 1.0 - reserve if lane == "archival" else 1.0
        bucket = f"{product}:{api}"
        factor = gauges.get(f'idv_limiter_rate_factor{{bucket="{bucket}"}}')
        if factor is None:
            factor = 1.0 - self.settings.quotas.quota_safety_margin
        return self._quotas.quota_for(product, api) * share * factor


Parsed = tuple[str, dict[str, str], float]


def _parsed(counters: Mapping[str, float]) -> Iterable[Parsed]:
    for key, value in counters.items():
        found = parse_series(key)
        if found is not None:
            yield found[0], found[1], value


def _total(series: Iterable[Parsed], name: str, **match: str) -> float:
    return sum(
        value
        for n, labels, value in series
        if n == name and all(labels.get(k) == v for k, v in match.items())
    )


def _reading(series: list[Parsed], lane: str) -> Reading:
    """Cumulative busy seconds, items, limiter wait and grants of ``lane``'s flow."""
    flow = _FLOWS[lane]
    busy = _total(series, "idv_task_seconds_sum", flow=flow)
    if lane == "bulk":
        items = _total(series, "idv_batch_items_total")  # rows, not chunk tasks
    else:
        items = _total(series, "idv_task_seconds_bucket", flow=flow, le="+Inf")
    wait_s = _total(series, "idv_limiter_wait_seconds_sum", lane=lane)
    waits = _total(series, "idv_limiter_wait_seconds_bucket", lane=lane, le="+Inf")
    return Reading(busy_s=busy, items=items, wait_s=wait_s, waits=waits)


def loads_json(loads: Iterable[LaneLoad]) -> list[dict[str, Any]]:
    """The loads and their demand, for ``bench/autoscale.py`` and debugging."""
    out = []
    for load in loads:
        d = desired(load)
        out.append(
            {
                "lane": load.lane,
                "backlog": load.backlog,
                "in_flight": load.in_flight,
                "seconds_per_item": round(load.seconds_per_item, 4),
                "quota": load.quota,
                "needed": d.needed,
                "useful": d.useful,
                "processes": d.processes,
                "workers": d.workers,
            }
        )
    return out
