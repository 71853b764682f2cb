"""Delivering the outbox's events: one attempt (``EventDelivery``) and the driver that finds
every due one (``OutboxDriver``).

An attempt claims the event (``worker.jobs.outbox``), posts it signed with its stable
``webhook-id`` and records the answer in the outbox: 2xx ``delivered`` (never sent again);
a network error, 408, 425, 429 or 5xx makes it due again after a jittered backoff
(``worker.backoff.WEBHOOK_TASK``) until ``IDV_WEBHOOK_MAX_ATTEMPTS`` attempts were made; then,
or on any other status, it is ``dead`` and a dead letter of kind ``webhook`` keeps the event,
under ``<scope>:<subject>:<event id>`` so erasure of the transaction or batch finds it
(``idv-worker dlq retry`` announces it again, which makes it pending with fresh attempts).

The driver runs on every worker process's heartbeat: it takes the events due now (new ones
whose hint was lost, retries whose time came, attempts that died with their process) and
hints each on the ``idv.webhooks`` queue, moved ``hint_s`` ahead so a lost hint costs that
much; it also publishes the backlog gauges.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from worker.backoff import WEBHOOK_TASK
from worker.events import build
from worker.jobs import KIND_WEBHOOK
from worker.jobs.outbox import Claimed, Outbox, dead_letter_ref
from worker.observability import Metrics, get_logger, log_context
from worker.settings import WebhookSettings
from worker.stores import DeadLetterStore
from worker.webhook import WebhookError, WebhookSender

log = get_logger("webhook")


class EventDelivery:
    """One attempt at one event of the outbox (see the module docstring)."""

    def __init__(
        self,
        outbox: Outbox,
        sender: WebhookSender | None,
        deadletters: DeadLetterStore,
        settings: WebhookSettings,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.outbox = outbox
        self.sender = sender
        self.deadletters = deadletters
        self.max_attempts = settings.webhook_max_attempts
        self.metrics = metrics
        self.clock = clock

    def send(self, event_id: str) -> str:
        """Attempt ``event_id`` if it is due and not held: ``delivered``, ``retry`` or
        ``dead``, or why nothing was sent (``held``, ``later``, ``delivered``, ``dead``,
        ``gone``)."""
        claimed = self.outbox.claim(event_id)
        if isinstance(claimed, str):
            return claimed
        with log_context(event=claimed.notice.type, webhook_id=event_id):
            return self._attempt(claimed)

    def _attempt(self, claimed: Claimed) -> str:
        if self.sender is None:
            return self._dead(claimed, "no webhook is configured", "Config")
        try:
            msg_id, body = build(claimed.notice)
        except (ValidationError, ValueError) as exc:
            reason = f"{claimed.notice.type} does not fit its schema: {type(exc).__name__}"
            return self._dead(claimed, reason, "Bad")
        try:
            self.sender.post(msg_id, body)
        except WebhookError as exc:
            self.metrics.incr("idv_webhooks", outcome="failed")
            if exc.retryable and claimed.attempt < self.max_attempts:
                self.outbox.finish(
                    claimed, "retry", next_at=self._retry_at(claimed), error=exc.reason
                )
                return "retry"
            reason = f"{exc.reason} after {claimed.attempt} attempt(s)"
            return self._dead(claimed, reason, exc.reason)
        self.outbox.finish(claimed, "delivered")
        self.metrics.incr("idv_webhooks", outcome="delivered")
        return "delivered"

    def _retry_at(self, claimed: Claimed) -> float:
        return self.clock() + WEBHOOK_TASK.delay(claimed.attempt - 1)

    def _dead(self, claimed: Claimed, reason: str, code: str) -> str:
        """The dead letter first (the event is never lost), then the outbox entry."""
        payload: dict[str, Any] = {
            "event_id": claimed.event_id,
            "notice": claimed.notice.to_message(),
        }
        ref = dead_letter_ref(claimed.notice, claimed.event_id)
        self.deadletters.add(KIND_WEBHOOK, ref, reason, code=code, payload=payload)
        self.outbox.finish(claimed, "dead", error=reason)
        self.metrics.incr("idv_webhooks", outcome="dead")
        log.error("webhook event %s dead-lettered: %s", claimed.event_id, reason)
        return "dead"


class OutboxDriver:
    """Hints every due event of the outbox (see the module docstring); ``tick`` once a beat."""

    def __init__(
        self,
        outbox: Outbox,
        hint: Callable[[str], None],
        metrics: Metrics,
        *,
        hint_s: float,
        limit: int = 100,
    ) -> None:
        self.outbox = outbox
        self.hint = hint
        self.metrics = metrics
        self.hint_s = hint_s
        self.limit = limit

    def tick(self) -> int:
        """Hint the events due now; publish the backlog. Returns how many were hinted."""
        due = self.outbox.take_due(self.limit, self.hint_s)
        for event_id in due:
            self.hint(event_id)
        backlog = self.outbox.backlog()
        self.metrics.gauge("idv_webhook_outbox_pending", float(backlog.pending))
        self.metrics.gauge("idv_webhook_outbox_oldest_seconds", backlog.oldest_s)
        return len(due)
