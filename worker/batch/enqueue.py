"""How the batch services hand work to Celery, without importing the task modules.

Messages carry a batch id and a chunk number, never rows or images: the rows wait in Redis
(``worker.batch.store``), so a million-row backlog costs the broker a few thousand messages.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from worker.notices import Notice, send_notice
from worker.queues import TASK_CHUNK, TASK_FINALIZE, TASK_WATCHDOG, cap_countdown

if TYPE_CHECKING:
    from celery import Celery


class Enqueuer(Protocol):
    """Sends the batch's Celery messages (routed to the ``idv.bulk`` queue)."""

    def chunks(self, batch_id: str, chunk_nos: Iterable[int], *, countdown: float = 0.0) -> int:
        """Enqueue one message per chunk (after ``countdown`` s); returns how many were sent."""

    def watchdog(self, batch_id: str, countdown: float) -> None:
        """Enqueue the batch's watchdog to run in ``countdown`` seconds."""

    def finalize(self, batch_id: str) -> None:
        """Enqueue the batch's finalisation (export of results)."""

    def notify(self, notice: Notice) -> None:
        """An event for the webhook (``batch.*``; sent only when one is configured)."""


class CeleryEnqueuer:
    """``Enqueuer`` on a Celery app (by task name; routes put ``idv.batch.*`` on ``idv.bulk``)."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def chunks(self, batch_id: str, chunk_nos: Iterable[int], *, countdown: float = 0.0) -> int:
        delay = cap_countdown(countdown) or None
        sent = 0
        with self.app.producer_or_acquire() as producer:
            for chunk_no in chunk_nos:
                self.app.send_task(
                    TASK_CHUNK, args=[batch_id, chunk_no], producer=producer, countdown=delay
                )
                sent += 1
        return sent

    def watchdog(self, batch_id: str, countdown: float) -> None:
        self.app.send_task(TASK_WATCHDOG, args=[batch_id], countdown=cap_countdown(countdown))

    def finalize(self, batch_id: str) -> None:
        self.app.send_task(TASK_FINALIZE, args=[batch_id])

    def notify(self, notice: Notice) -> None:
        send_notice(self.app, notice)
