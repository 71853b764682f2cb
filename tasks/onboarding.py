"""Onboarding tasks (realtime lane): ``idv.onboarding.process`` for one transaction.

Thin: parse the message, call ``worker.onboarding.OnboardingService``, turn errors into a retry
or a dead letter. The message carries ids and times only (``OnboardingJob.to_message``) and
``expires`` at the end of the evidence window; a message that expired in the queue is not run
blindly: it becomes a dead letter (code ``Expired``), a metric and a Sentry event.

Dead letters of kinds ``onboarding`` and ``evidence`` are retried (``idv-worker dlq retry``) as a
*late* run: no 30-minute bound, a record whose evidence was lost is redone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from celery import current_app, shared_task, signals
from pydantic import ValidationError

from tasks.base import IdvTask
from worker.backoff import ONBOARDING_TASK, RetryPolicy
from worker.events import result_notice
from worker.jobs import KIND_ONBOARDING, OnboardingJob
from worker.keys import KIND_TX, InvalidKeyError
from worker.observability import get_logger, log_context, report_to_sentry
from worker.queues import TASK_PROCESS
from worker.wiring import current_node

if TYPE_CHECKING:
    pass

log = get_logger("tasks.onboarding")


class OnboardingTask(IdvTask):
    """Base of onboarding tasks: retries are bounded by the job's deadline, not by a count."""

    abstract = True
    flow: ClassVar[str] = "onboarding"
    # ``ProcessNotCompleted`` is polled at least every ``cap_s`` until the deadline.
    retry_policy: ClassVar[RetryPolicy] = ONBOARDING_TASK


@shared_task(bind=True, base=OnboardingTask, name=TASK_PROCESS)
def process(self: OnboardingTask, job: dict[str, Any], late: bool = False) -> None:
    """Fetch the result of one transaction, archive its evidence, write it back."""
    try:
        parsed = OnboardingJob.from_message(job)
    except (ValidationError, InvalidKeyError, TypeError):
        self.dead_letter(
            KIND_ONBOARDING, f"malformed-{self.request.id}", "malformed task message", code="Bad"
        )
    tid = parsed.transaction_id
    deadline = None if late else parsed.deadline
    payload = {"job": parsed.to_message()}
    with log_context(transaction=tid, lane="realtime", flow="onboarding"):
        try:
            outcome = self.node.onboarding.process(parsed, late=late)
        except Exception as exc:
            self.retry_in_ledger(exc, tid, kind=KIND_ONBOARDING, payload=payload, deadline=deadline)
        # The result's event goes to the outbox after the record is written: also when this
        # run finds the record already written (a run that died before announcing it; one
        # taken over); the outbox keeps one entry per event, so nothing is sent twice.
        if self.node.settings.webhooks.enabled and outcome.status in ("done", "already_done"):
            record = self.node.results.get_record(KIND_TX, tid)
            if record is not None:
                self.node.sender.notify(result_notice(record))


@signals.task_revoked.connect
def _on_revoked(sender: Any = None, request: Any = None, expired: bool = False, **_: Any) -> None:
    """A process message that expired in the queue: dead letter, metric, Sentry (never silent)."""
    if not expired or getattr(sender, "name", None) != TASK_PROCESS:
        return
    kwargs: Mapping[str, Any] = getattr(request, "kwargs", None) or {}
    try:
        job = OnboardingJob.from_message(kwargs.get("job") or {})
    except (ValidationError, InvalidKeyError, TypeError):
        log.error("an expired onboarding message could not be parsed")
        return
    node = current_node(getattr(sender, "app", None) or current_app)
    if node.results.get_record(KIND_TX, job.transaction_id) is not None:
        return  # a replayed callback of a transaction already done: nothing was lost
    node.deadletters.add(
        KIND_ONBOARDING,
        job.transaction_id,
        "expired in the queue: the evidence window closed before a worker took it",
        code="Expired",
        payload={"job": job.to_message()},
    )
    node.metrics.incr("idv_onboarding", outcome="expired")
    report_to_sentry(
        "onboarding message expired before it ran",
        flow="onboarding",
        transaction_id=job.transaction_id,
    )
