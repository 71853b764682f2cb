"""Ledger tasks: the reconciler and the archival sweep (beat), and one archival run.

``idv.ledger.reconcile`` and ``idv.ledger.archive_sweep`` run on beat's schedule (routed to
``idv.realtime``: they are short and must not wait behind an archival backlog); each takes the
ledger's sweep lock, so two beats at once do nothing twice. ``idv.archival.archive`` (queue
``idv.archival``) fetches and stores one transaction's full result before the provider deletes
it, in the archival lane; retried within its deadline, then dead-lettered (kind ``archival``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

from celery import shared_task
from pydantic import ValidationError

from tasks.base import IdvTask
from worker.backoff import ARCHIVAL_TASK, LEDGER_SWEEP_TASK, RetryPolicy
from worker.jobs import KIND_ARCHIVAL, KIND_SWEEP, OnboardingJob
from worker.keys import InvalidKeyError
from worker.observability import cron_monitor, log_context
from worker.queues import TASK_ARCHIVE, TASK_ARCHIVE_SWEEP, TASK_BATCH_SWEEP, TASK_RECONCILE

if TYPE_CHECKING:
    pass


class LedgerTask(IdvTask):
    """Base of the ledger's tasks."""

    abstract = True
    flow: ClassVar[str] = "ledger"
    retry_policy: ClassVar[RetryPolicy] = LEDGER_SWEEP_TASK


class ArchivalTask(IdvTask):
    """An archival run: retries bounded by its deadline (day 30 minus the margin)."""

    abstract = True
    flow: ClassVar[str] = "archival"
    retry_policy: ClassVar[RetryPolicy] = ARCHIVAL_TASK


@shared_task(bind=True, base=LedgerTask, name=TASK_RECONCILE, ignore_result=True)
def reconcile(self: LedgerTask) -> dict[str, Any]:
    """Re-drive every transaction whose realtime work is overdue (see worker.ledger)."""
    with cron_monitor("idv-reconcile", self.node.settings.ledger.reconcile_every_s):
        try:
            report = self.node.reconciler.reconcile()
        except Exception as exc:
            self.handle_error(exc, kind=KIND_SWEEP, item_id="reconcile")
    return {"claimed": report.claimed, "skipped": report.skipped, **report.dispatched}


@shared_task(bind=True, base=LedgerTask, name=TASK_BATCH_SWEEP, ignore_result=True)
def batch_sweep(self: LedgerTask) -> list[str]:
    """Re-drive running batches whose messages were lost (see BatchControl.sweep_stalled)."""
    try:
        return self.node.batch_control.sweep_stalled(now=time.time())
    except Exception as exc:
        self.handle_error(exc, kind=KIND_SWEEP, item_id="batches")


@shared_task(bind=True, base=LedgerTask, name=TASK_ARCHIVE_SWEEP, ignore_result=True)
def archive_sweep(self: LedgerTask) -> dict[str, Any]:
    """Queue archival runs for every transaction the ledger has due."""
    with cron_monitor("idv-archive-sweep", self.node.settings.ledger.archive_every_s):
        try:
            report = self.node.reconciler.archive_sweep()
        except Exception as exc:
            self.handle_error(exc, kind=KIND_SWEEP, item_id="archive")
    return {"claimed": report.claimed, "skipped": report.skipped, **report.dispatched}


@shared_task(bind=True, base=ArchivalTask, name=TASK_ARCHIVE, ignore_result=True)
def archive(self: ArchivalTask, job: dict[str, Any]) -> str:
    """Fetch and store one transaction's full result (and what is left of its evidence)."""
    try:
        parsed = OnboardingJob.from_message(job)
    except (ValidationError, InvalidKeyError, TypeError):
        self.dead_letter(
            KIND_ARCHIVAL, f"malformed-{self.request.id}", "malformed task message", code="Bad"
        )
    tid = parsed.transaction_id
    with log_context(transaction=tid, lane="archival", flow="archival"):
        try:
            outcome = self.node.onboarding.process(parsed, late=True)
        except Exception as exc:
            self.retry_in_ledger(
                exc,
                tid,
                kind=KIND_ARCHIVAL,
                payload={"job": parsed.to_message()},
                deadline=parsed.archive_by,
            )
    if outcome.status in ("done", "already_done"):
        lost = outcome.record.get("status") == "evidence_lost"
        self.node.metrics.incr("idv_archival", outcome="evidence_lost" if lost else "archived")
    return outcome.status
