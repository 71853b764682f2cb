"""Room for the latency lanes in a worker that consumes them beside the bulk lane.

A chunk task holds its process for up to ``IDV_BATCH_CHUNK_BUDGET_S`` (minutes at the quota),
so in a worker started on ``idv.realtime`` *and* ``idv.bulk`` an onboarding message (or a
webhook) could wait that long for a free process, although the queue order puts its lane
first. Each beat, a process running a chunk looks at the latency lanes this worker consumes:
when one has a message that has waited ``after_s`` (no process was free to take it), the chunk
hands its rest on after the current row (``BatchService.make_room``) and this process takes
that message next. One process per lane makes room per ``hold_s`` (a ``SET NX PX`` in Redis
shared by every worker), so a waiting message frees one process, not all of them.

Only a process running one chunk of its own makes room: a chunk it adopted from a dead worker
(``BatchService.adopt``) is never handed back to the queue for this. Workers that consume one
lane (the production layout: a pool per lane) never make room.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import redis
from celery import Celery

from worker.batch import BatchService
from worker.observability.broker import QueueProbe
from worker.queues import QUEUE_BULK, QUEUE_REALTIME, QUEUE_WEBHOOKS

log = logging.getLogger("idv.batch")

LATENCY_LANES = (QUEUE_REALTIME, QUEUE_WEBHOOKS)


def consumed_queues(app: Celery) -> list[str]:
    """The queues this worker consumes (``celery worker -Q``; every queue without it)."""
    return [str(name) for name in app.amqp.queues.consume_from]


def latency_lanes_beside_bulk(consumed: Iterable[str]) -> tuple[str, ...]:
    """The latency lanes among ``consumed`` when bulk is consumed too (else none)."""
    names = set(consumed)
    if QUEUE_BULK not in names:
        return ()
    return tuple(q for q in LATENCY_LANES if q in names)


class LaneRoom:
    """A heartbeat tick (see the module docstring)."""

    def __init__(
        self,
        broker: redis.Redis,
        store: redis.Redis,
        namespace: str,
        lanes: tuple[str, ...],
        service: BatchService,
        *,
        after_s: float = 1.0,
        hold_s: float = 2.0,
    ) -> None:
        self.probe = QueueProbe(broker, lanes)
        self.store = store
        self.namespace = namespace
        self.service = service
        self.after_s = after_s
        self.hold_ms = max(1, int(hold_s * 1000))

    def tick(self) -> bool:
        """Make room if a latency lane's message waits; True when this process does."""
        if not self.service.can_make_room:
            return False
        for stat in self.probe.read():
            if stat.length == 0:
                continue
            if stat.oldest_age_s is not None and stat.oldest_age_s < self.after_s:
                continue
            key = f"{self.namespace}room:{stat.queue}"
            if self.store.set(key, "1", nx=True, px=self.hold_ms):
                if not self.service.make_room():  # adopted a chunk meanwhile: let another
                    self.store.delete(key)
                    return False
                log.info("a %s message waits for a process: the running chunk hands on",
                         stat.queue)  # fmt: skip
                return True
        return False
