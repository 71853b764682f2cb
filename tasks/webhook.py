"""Result webhook task (``idv.webhooks`` queue): ``idv.webhook.deliver(transaction_id)``.

Loads the transaction's result record and posts it, signed, to ``IDV_WEBHOOK_URL``
(``worker.webhook``). Network errors, 408/425/429 and 5xx are retried with backoff up to
``IDV_WEBHOOK_MAX_ATTEMPTS``; anything else, or running out of attempts, ends in a dead letter
of kind ``webhook`` (``idv-worker dlq retry`` sends it again).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from celery import shared_task

from tasks.base import IdvTask
from worker.backoff import WEBHOOK_TASK, RetryPolicy
from worker.keys import KIND_TX, InvalidKeyError, validate_id
from worker.observability import log_context
from worker.queues import TASK_DELIVER
from worker.webhook import KIND_WEBHOOK, WebhookConfigError, WebhookError

if TYPE_CHECKING:
    pass


class WebhookTask(IdvTask):
    """Base of the webhook task: backoff 5 s, 10 s, 20 s ... capped by the base class."""

    abstract = True
    flow: ClassVar[str] = "webhook"
    retry_policy: ClassVar[RetryPolicy] = WEBHOOK_TASK  # the bound: IDV_WEBHOOK_MAX_ATTEMPTS


@shared_task(bind=True, base=WebhookTask, name=TASK_DELIVER)
def deliver(self: WebhookTask, transaction_id: str) -> None:
    """Post the result record of ``transaction_id`` to the configured webhook."""
    try:
        tid = validate_id(transaction_id, "transaction_id")
    except InvalidKeyError:
        self.dead_letter(KIND_WEBHOOK, f"malformed-{self.request.id}", "malformed transaction id")
    node = self.node
    with log_context(transaction=tid, flow="webhook"):
        try:
            sender = node.webhook_sender
        except WebhookConfigError as exc:
            self.dead_letter(KIND_WEBHOOK, tid, str(exc), code="Config")
        if sender is None:
            return
        record = node.results.get_record(KIND_TX, tid)
        if record is None:
            self.dead_letter(KIND_WEBHOOK, tid, "result record not found (expired?)", code="Gone")
        try:
            sender.deliver(record)
        except WebhookError as exc:
            node.metrics.incr("idv_webhooks", outcome="failed")
            attempts = self.request.retries + 1
            if exc.retryable and attempts < node.settings.webhooks.webhook_max_attempts:
                self.retry_later(exc, self.backoff())
            self.dead_letter(
                KIND_WEBHOOK, tid, f"{exc.reason} after {attempts} attempt(s)", code=exc.reason
            )
        node.metrics.incr("idv_webhooks", outcome="delivered")
