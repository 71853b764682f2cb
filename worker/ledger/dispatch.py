"""How the ledger's sweeps hand work to Celery, by task name (no task module is imported)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis

from worker.notices import Notice, send_notice
from worker.observability import QueueProbe
from worker.onboarding import OnboardingJob
from worker.queues import QUEUE_ARCHIVAL, TASK_ARCHIVE, TASK_PROCESS

if TYPE_CHECKING:
    from celery import Celery


class CeleryDispatcher:
    """Sends onboarding runs to ``idv.realtime``, archival runs to ``idv.archival`` and events
    to ``idv.webhooks``.

    ``broker`` is a client of the broker's Redis, to read the archival backlog.
    """

    def __init__(self, app: Celery, broker: redis.Redis) -> None:
        self.app = app
        self._probe = QueueProbe(broker, (QUEUE_ARCHIVAL,))

    def onboard(self, job: OnboardingJob) -> None:
        self.app.send_task(TASK_PROCESS, kwargs={"job": job.to_message()})

    def archive(self, job: OnboardingJob) -> None:
        self.app.send_task(TASK_ARCHIVE, kwargs={"job": job.to_message()})

    def archival_backlog(self) -> int:
        return sum(stat.length for stat in self._probe.read())

    def notify(self, notice: Notice) -> None:
        send_notice(self.app, notice)
