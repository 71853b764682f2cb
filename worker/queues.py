"""Queue and task names, and the longest countdown any message may carry.

Services hand work to Celery by task *name* (through a small Protocol), so nothing below the
entry layer imports ``worker.app`` or ``tasks``. One queue per lane, so minutes-deadline work
never waits behind a backlog of hours:

* ``idv.realtime`` — onboarding: fetch results, archive evidence (deadline: 30 min after completion)
* ``idv.webhooks`` — events to the user's webhook endpoint (no provider calls)
* ``idv.archival`` — reconciler and archival sweeps (deadline: day 30)
* ``idv.bulk``     — batch OCR items (deadline: hours)
"""

from __future__ import annotations

# The longest countdown (ETA) any Celery message may carry. IDV_BROKER_VISIBILITY_TIMEOUT_S must
# exceed it plus IDV_TASK_TIME_LIMIT_S (worker.settings.BrokerSettings checks it): a message whose
# ETA, or whose run, lies beyond the visibility timeout is redelivered to a second worker.
MAX_COUNTDOWN_S = 300.0

QUEUE_REALTIME = "idv.realtime"
QUEUE_ARCHIVAL = "idv.archival"
QUEUE_BULK = "idv.bulk"
QUEUE_WEBHOOKS = "idv.webhooks"
ALL_QUEUES = (QUEUE_REALTIME, QUEUE_WEBHOOKS, QUEUE_ARCHIVAL, QUEUE_BULK)

# Task names (``tasks/`` registers them; everything else sends them by name).
TASK_PROCESS = "idv.onboarding.process"
"""Fetch the result of one transaction, archive its evidence, write it back."""
TASK_DELIVER = "idv.webhook.deliver"
"""Post one result record to the user's webhook (event ``onboarding.result``)."""
TASK_EVENT = "idv.webhook.event"
"""Post one event a service announced (``worker.jobs.Notice``) to the user's webhook."""
TASK_SEND = "idv.webhook.send"
"""Send one event of the outbox now (a hint: the outbox holds the event and its due time)."""
TASK_ARCHIVE = "idv.archival.archive"
"""Fetch and store the full result of one transaction before the provider deletes it."""
TASK_RECONCILE = "idv.ledger.reconcile"
"""Re-drive overdue realtime work (beat, every IDV_RECONCILE_EVERY_S)."""
TASK_ARCHIVE_SWEEP = "idv.ledger.archive_sweep"
"""Queue archival runs for what the ledger has due (beat, every IDV_ARCHIVE_EVERY_S)."""
TASK_BATCH_SWEEP = "idv.ledger.batch_sweep"
"""Re-drive running batches that stopped making progress (beat, every IDV_RECONCILE_EVERY_S)."""
TASK_CHUNK = "idv.batch.chunk"
TASK_WATCHDOG = "idv.batch.watchdog"
TASK_FINALIZE = "idv.batch.finalize"
TASK_SWEEP_UPLOADS = "idv.archival.sweep_uploads"
"""Abort the multipart uploads left behind (beat, every ``IDV_S3_UPLOAD_SWEEP_EVERY_S``)."""

# Task modules; each holds the thin tasks of one flow.
TASK_MODULES: tuple[str, ...] = (
    "tasks.onboarding",
    "tasks.webhook",
    "tasks.batch",
    "tasks.ledger",
    "tasks.storage",
)

ROUTES = {
    "idv.onboarding.*": QUEUE_REALTIME,
    "idv.webhook.*": QUEUE_WEBHOOKS,
    "idv.archival.*": QUEUE_ARCHIVAL,
    # The sweeps are short and must not wait behind an archival backlog of days.
    "idv.ledger.*": QUEUE_REALTIME,
    "idv.batch.*": QUEUE_BULK,
}


def cap_countdown(countdown: float) -> float:
    """``countdown`` clamped to ``[0, MAX_COUNTDOWN_S]``."""
    return max(0.0, min(countdown, MAX_COUNTDOWN_S))
