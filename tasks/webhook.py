"""Webhook tasks (``idv.webhooks`` queue): every event posted, signed, to ``IDV_WEBHOOK_URL``.

* ``idv.webhook.deliver(transaction_id)``: the ``onboarding.result`` event of the transaction's
  result record;
* ``idv.webhook.event(notice)``: an event a service announced (``worker.notices.Notice``).

The event's body and ``webhook-id`` are derived from the message, so every retry posts the same
event (``worker.events``). Network errors, 408/425/429 and 5xx are retried with backoff up to
``IDV_WEBHOOK_MAX_ATTEMPTS``; anything else, or running out of attempts, ends in a dead letter
of kind ``webhook`` (``idv-worker dlq retry`` sends it again).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from celery import shared_task
from pydantic import ValidationError

from tasks.base import IdvTask
from worker.events import build, event_id, result_notice
from worker.keys import KIND_TX, InvalidKeyError, validate_id
from worker.notices import Notice
from worker.observability import log_context
from worker.queues import TASK_DELIVER, TASK_EVENT
from worker.webhook import KIND_WEBHOOK, WebhookConfigError, WebhookError

if TYPE_CHECKING:
    from worker.settings import Settings
    from worker.stores import DeadLetter, DeadLetterStore


class WebhookTask(IdvTask):
    """Base of the webhook tasks: backoff 5 s, 10 s, 20 s ... capped by the base class."""

    abstract = True
    flow: ClassVar[str] = "webhook"
    max_retries = 100  # the real bound is IDV_WEBHOOK_MAX_ATTEMPTS, checked in the task
    backoff_base_s: ClassVar[float] = 5.0

    def post(self, notice: Notice, item_id: str, payload: dict[str, Any] | None = None) -> None:
        """Post the event of ``notice``; retry or dead-letter (under ``item_id``) on failure."""
        runtime = self.runtime
        try:
            sender = runtime.webhook_sender
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
                runtime.metrics.incr("idv_webhooks", outcome="failed")
                attempts = self.request.retries + 1
                if exc.retryable and attempts < runtime.settings.webhook_max_attempts:
                    self.retry_later(exc, self.backoff())
                reason = f"{exc.reason} after {attempts} attempt(s)"
                self.dead_letter(KIND_WEBHOOK, item_id, reason, code=exc.reason, payload=payload)
        runtime.metrics.incr("idv_webhooks", outcome="delivered")


@shared_task(bind=True, base=WebhookTask, name=TASK_DELIVER)
def deliver(self: WebhookTask, transaction_id: str) -> None:
    """Post the ``onboarding.result`` event of ``transaction_id``'s result record."""
    try:
        tid = validate_id(transaction_id, "transaction_id")
    except InvalidKeyError:
        self.dead_letter(KIND_WEBHOOK, f"malformed-{self.request.id}", "malformed transaction id")
    with log_context(transaction=tid, flow="webhook"):
        if self.runtime.settings.webhook_url is None:
            return
        record = self.runtime.results.get_record(KIND_TX, tid)
        if record is None:
            self.dead_letter(KIND_WEBHOOK, tid, "result record not found (expired?)", code="Gone")
        self.post(result_notice(record), tid)


@shared_task(bind=True, base=WebhookTask, name=TASK_EVENT)
def event(self: WebhookTask, notice: dict[str, Any]) -> None:
    """Post the event a service announced (``worker.notices.Notice.to_message``)."""
    try:
        parsed = Notice.from_message(notice)
    except (KeyError, TypeError, ValueError):
        self.dead_letter(
            KIND_WEBHOOK, f"malformed-{self.request.id}", "malformed event message", code="Bad"
        )
    msg_id = event_id(parsed.type, parsed.subject, parsed.version)
    self.post(parsed, msg_id, {"notice": parsed.to_message()})


def register_retries(store: DeadLetterStore, settings: Settings) -> None:
    """``idv-worker dlq retry`` for kind ``webhook``: send the event again."""
    from worker.app import create_app

    app = create_app(settings)

    def retry(entry: DeadLetter) -> None:
        notice = entry.payload.get("notice")
        if isinstance(notice, dict):
            app.send_task(TASK_EVENT, kwargs={"notice": Notice.from_message(notice).to_message()})
            return
        tid = validate_id(entry.id, "transaction_id")
        app.send_task(TASK_DELIVER, args=[tid])

    store.register_retry(KIND_WEBHOOK, retry)
