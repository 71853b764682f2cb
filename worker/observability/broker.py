"""Celery queue depth and the age of the oldest waiting message, read from the Redis broker.

kombu's Redis transport keeps a queue as a list (``LPUSH`` to publish, ``RPOP``/``BRPOP`` to
consume, so the tail is the oldest message), plus one list per priority step for messages sent
with a priority (``<queue>\\x06\\x163`` …). Celery's message carries no send time, so every
message this code base publishes gets an ``enqueued_at`` header (``before_task_publish``);
a tail message without it (published elsewhere) gives no age.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from celery import signals

ENQUEUED_AT = "enqueued_at"
# kombu.transport.redis: Channel.sep and PRIORITY_STEPS (0 is the plain queue name).
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (0, 3, 6, 9)


@dataclass(frozen=True, slots=True)
class QueueStat:
    queue: str
    length: int
    oldest_age_s: float | None  # None: non-empty, but no message tells its age


def priority_keys(queue: str) -> list[str]:
    """The Redis lists kombu uses for ``queue``, one per priority step."""
    return [queue if step == 0 else f"{queue}{_PRIORITY_SEP}{step}" for step in _PRIORITY_STEPS]


def _enqueued_at(raw: bytes | str | None) -> float | None:
    if raw is None:
        return None
    try:
        message = json.loads(raw)
        value = message["headers"][ENQUEUED_AT]
        return float(value)
    except (ValueError, KeyError, TypeError):
        return None


class QueueProbe:
    """Reads LLEN and the tail message of every lane queue in one round trip."""

    def __init__(
        self,
        client: redis.Redis,
        queues: Sequence[str],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._r = client
        self.queues = tuple(queues)
        self._clock = clock

    def read(self) -> list[QueueStat]:
        """One ``QueueStat`` per queue. Raises ``redis.RedisError``."""
        pipe = self._r.pipeline(transaction=False)
        for queue in self.queues:
            for key in priority_keys(queue):
                pipe.llen(key)
                pipe.lindex(key, -1)
        replies: list[Any] = pipe.execute()
        now = self._clock()
        stats = []
        steps = len(_PRIORITY_STEPS)
        for i, queue in enumerate(self.queues):
            chunk = replies[i * 2 * steps : (i + 1) * 2 * steps]
            length = sum(int(n) for n in chunk[0::2])
            stamps = [_enqueued_at(raw) for raw in chunk[1::2] if raw is not None]
            age: float | None
            if length == 0:
                age = 0.0
            elif stamps and all(s is not None for s in stamps):
                age = max(0.0, now - min(s for s in stamps if s is not None))
            else:
                age = None
            stats.append(QueueStat(queue, length, age))
        return stats


def stamp_enqueued_at(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """``before_task_publish`` receiver: record when a message was sent (for queue age).

    Always overwritten: a retry carries its first message's headers, but waits from now.
    """
    if headers is not None:
        headers[ENQUEUED_AT] = time.time()


def connect_publish_stamp() -> None:
    """Stamp every message this process publishes (idempotent)."""
    signals.before_task_publish.connect(
        stamp_enqueued_at, weak=False, dispatch_uid="idv.observability.enqueued_at"
    )


def queue_stats_json(stats: Iterable[QueueStat]) -> list[dict[str, Any]]:
    return [{"queue": s.queue, "length": s.length, "oldest_age_s": s.oldest_age_s} for s in stats]
