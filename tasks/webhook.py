"""Webhook tasks (``idv.webhooks`` queue): every event posted, signed, to ``IDV_WEBHOOK_URL``.

* ``idv.webhook.send(event_id)``: attempt one event of the outbox (``worker.jobs.outbox``)
  now; the message is only a hint, the outbox holds the event, its attempts and its due time
  (``worker.events.delivery``: retries are due times there, never delayed messages);
* ``idv.webhook.deliver(transaction_id)``: the ``onboarding.result`` event of the transaction's
  result record; ``idv.webhook.event(notice)``: an event a service announced. Both are written
  to the outbox and attempted at once (messages of an earlier version; without an outbox they
  post directly, retried with backoff as before).

The event's body and ``webhook-id`` are derived from the event, so every attempt posts the
same event (``worker.events``). Network errors, 408/425/429 and 5xx are retried up to
``IDV_WEBHOOK_MAX_ATTEMPTS``; anything else, or running out of attempts, ends in a dead letter
of kind ``webhook`` (``idv-worker dlq retry`` sends it again).
"""

from __future__ import annotations

from typing import Any, ClassVar

from celery import shared_task
from pydantic import ValidationError

from tasks.base import IdvTask
from worker.backoff import WEBHOOK_TASK, RetryPolicy
from worker.events import build, event_id, result_notice
from worker.jobs import CelerySender, Notice
from worker.keys import KIND_TX, InvalidKeyError, validate_id
from worker.observability import get_logger, log_context
from worker.queues import TASK_DELIVER, TASK_EVENT, TASK_SEND
from worker.webhook import KIND_WEBHOOK, WebhookConfigError, WebhookError

log = get_logger("webhook")


class WebhookTask(IdvTask):
    """Base of the webhook tasks: backoff 5 s, 10 s, 20 s ... capped by the base class."""

    abstract = True
    flow: ClassVar[str] = "webhook"
    retry_policy: ClassVar[RetryPolicy] = WEBHOOK_TASK  # the bound: IDV_WEBHOOK_MAX_ATTEMPTS

    def post(self, notice: Notice, item_id: str, payload: dict[str, Any] | None = None) -> None:
        """Post the event of ``notice``: through the outbox when there is one (written, then
        attempted now); else directly, retried or dead-lettered (under ``item_id``)."""
        node = self.node
        sender_ = node.sender
        delivery = node.delivery
        if delivery is not None and isinstance(sender_, CelerySender) and sender_.outbox:
            event_id, _ = sender_.outbox.add(notice)
            delivery.send(event_id)
            return
        try:
            sender = node.webhook_sender
        except WebhookConfigError as exc:
            self.dead_letter(KIND_WEBHOOK, item_id, str(exc), code="Config", payload=payload)
        if sender is None:
            return
        try:
            msg_id, body = build(notice)
        except (ValidationError, ValueError) as exc:
            reason = f"{notice.type} does not fit its schema: {type(exc).__name__}"
            self.dead_letter(KIND_WEBHOOK, item_id, reason, code="Bad", payload=payload)
        with log_context(event=notice.type, webhook_id=msg_id):
            try:
                sender.post(msg_id, body)
            except WebhookError as exc:
                node.metrics.incr("idv_webhooks", outcome="failed")
                attempts = self.request.retries + 1
                if exc.retryable and attempts < node.settings.webhooks.webhook_max_attempts:
                    self.retry_later(exc, self.backoff())
                reason = f"{exc.reason} after {attempts} attempt(s)"
                self.dead_letter(KIND_WEBHOOK, item_id, reason, code=exc.reason, payload=payload)
        node.metrics.incr("idv_webhooks", outcome="delivered")


@shared_task(bind=True, base=WebhookTask, name=TASK_DELIVER)
def deliver(self: WebhookTask, transaction_id: str) -> None:
    """Post the ``onboarding.result`` event of ``transaction_id``'s result record."""
    try:
        tid = validate_id(transaction_id, "transaction_id")
    except InvalidKeyError:
        self.dead_letter(KIND_WEBHOOK, f"malformed-{self.request.id}", "malformed transaction id")
    with log_context(transaction=tid, flow="webhook"):
        if not self.node.settings.webhooks.enabled:
            return
        record = self.node.results.get_record(KIND_TX, tid)
        if record is None:
            self.dead_letter(KIND_WEBHOOK, tid, "result record not found (expired?)", code="Gone")
        self.post(result_notice(record), tid)


@shared_task(bind=True, base=WebhookTask, name=TASK_EVENT)
def event(self: WebhookTask, notice: dict[str, Any]) -> None:
    """Post the event a service announced (``worker.jobs.Notice.to_message``)."""
    try:
        parsed = Notice.from_message(notice)
    except (KeyError, TypeError, ValueError):
        self.dead_letter(
            KIND_WEBHOOK, f"malformed-{self.request.id}", "malformed event message", code="Bad"
        )
    msg_id = event_id(parsed.type, parsed.subject, parsed.version)
    self.post(parsed, msg_id, {"notice": parsed.to_message()})


@shared_task(bind=True, base=WebhookTask, name=TASK_SEND)
def send(self: WebhookTask, event_id: str) -> None:
    """Attempt the outbox's event ``event_id`` if it is due and no other attempt holds it."""
    delivery = self.node.delivery
    if delivery is None:
        return  # no webhook configured here: the event waits in the outbox
    try:
        validate_id(event_id, "event_id")
    except InvalidKeyError:
        return  # not an event of ours: nothing to send
    with log_context(flow="webhook", webhook_id=event_id):
        outcome = delivery.send(event_id)
    log.debug("event %s: %s", event_id, outcome)
