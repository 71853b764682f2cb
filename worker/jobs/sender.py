"""The one way services hand work to Celery: a ``WorkSender``, by task name.

Services receive a sender; none imports ``tasks`` or the Celery app. Messages carry ids and
times only (a job, a batch id and chunk number, a transaction id), never personal data.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from worker.jobs.onboarding import OnboardingJob


class WorkSender(Protocol):
    """Sends every kind of work (each routed to its lane's queue by task name)."""

    def onboard(
        self,
        job: OnboardingJob,
        *,
        late: bool = False,
        task_id: str | None = None,
        urgent: bool = False,
    ) -> None:
        """Fetch, archive and write back one transaction (``idv.realtime``).

        ``late``: a re-run from the dead letters; ``urgent``: expire the message at the job's
        deadline and retry the publish briefly (the receiver answering the provider)."""

    def archive(self, job: OnboardingJob) -> None:
        """Fetch and store one transaction's full result before deletion (``idv.archival``)."""

    def deliver(self, transaction_id: str) -> None:
        """Post one result record to the user's webhook (``idv.webhooks``)."""

    def chunks(self, batch_id: str, chunk_nos: Iterable[int], *, countdown: float = 0.0) -> int:
        """One message per chunk of a batch (after ``countdown`` s); returns how many."""

    def watchdog(self, batch_id: str, countdown: float) -> None:
        """The batch's watchdog, in ``countdown`` seconds."""

    def finalize(self, batch_id: str) -> None:
        """The batch's finalisation (export of results)."""

    def archival_backlog(self) -> int:
        """Messages waiting in the archival queue (the sweep fills it up to a bound)."""
