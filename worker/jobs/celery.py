"""``WorkSender`` on a Celery app: by task name, so no task module is imported."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import redis
from kombu.exceptions import OperationalError

from worker.jobs.notices import Notice
from worker.jobs.onboarding import OnboardingJob
from worker.observability import QueueProbe
from worker.queues import (
    QUEUE_ARCHIVAL,
    TASK_ARCHIVE,
    TASK_CHUNK,
    TASK_DELIVER,
    TASK_EVENT,
    TASK_FINALIZE,
    TASK_PROCESS,
    TASK_SEND,
    TASK_WATCHDOG,
    cap_countdown,
)

if TYPE_CHECKING:
    from celery import Celery

    from worker.jobs.outbox import Outbox

log = logging.getLogger("idv.jobs")

# A publish on behalf of the provider's callback: a few quick tries, then 503 (it resends).
URGENT_PUBLISH_RETRY: dict[str, Any] = {
    "max_retries": 2,
    "interval_start": 0.05,
    "interval_step": 0.1,
    "interval_max": 0.2,
}


class CelerySender:
    """Sends by task name on ``app``; ``broker`` (a client of the broker's Redis) reads the
    archival backlog (None: the backlog reads 0); ``webhooks``: whether a webhook is configured
    (without one, ``notify`` sends nothing); ``outbox``: where ``notify`` writes each event
    first (``worker.jobs.outbox``), the message then being only a hint to send it now."""

    def __init__(
        self,
        app: Celery,
        broker: redis.Redis | None = None,
        *,
        webhooks: bool = False,
        outbox: Outbox | None = None,
    ) -> None:
        self.app = app
        self.webhooks = webhooks
        self.outbox = outbox
        self.broker = broker
        self._probe = QueueProbe(broker, (QUEUE_ARCHIVAL,)) if broker is not None else None

    def onboard(
        self,
        job: OnboardingJob,
        *,
        late: bool = False,
        task_id: str | None = None,
        urgent: bool = False,
    ) -> None:
        kwargs: dict[str, Any] = {"job": job.to_message()}
        if late:
            kwargs["late"] = True
        options: dict[str, Any] = {}
        if urgent:
            options = {
                "expires": datetime.fromtimestamp(job.deadline, UTC),
                "retry": True,
                "retry_policy": URGENT_PUBLISH_RETRY,
            }
        self.app.send_task(TASK_PROCESS, kwargs=kwargs, task_id=task_id, **options)

    def archive(self, job: OnboardingJob) -> None:
        self.app.send_task(TASK_ARCHIVE, kwargs={"job": job.to_message()})

    def deliver(self, transaction_id: str) -> None:
        self.app.send_task(TASK_DELIVER, args=[transaction_id])

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

    def archival_backlog(self) -> int:
        if self._probe is None:
            return 0
        return sum(stat.length for stat in self._probe.read())

    def notify(self, notice: Notice) -> None:
        if not self.webhooks:
            return
        if self.outbox is None:
            self.app.send_task(TASK_EVENT, kwargs={"notice": notice.to_message()})
            return
        event_id, fresh = self.outbox.add(notice)  # durable before any message
        if fresh:
            try:
                self.send_event(event_id)
            except OperationalError as exc:  # the outbox's driver sends it
                log.warning("event %s hint not sent: %s", event_id, type(exc).__name__)

    def send_event(self, event_id: str) -> None:
        """Hint that the outbox's event ``event_id`` is due: send it now."""
        self.app.send_task(TASK_SEND, args=[event_id])
