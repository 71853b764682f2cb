"""The work services hand to each other through Celery: job types, dead-letter kinds, and the
one sending interface (``WorkSender``; ``CelerySender`` in production)."""

from __future__ import annotations

from worker.jobs.celery import URGENT_PUBLISH_RETRY, CelerySender
from worker.jobs.draining import draining, reset_draining, start_draining
from worker.jobs.kinds import (
    DEAD_LETTER_KINDS,
    KIND_ARCHIVAL,
    KIND_CHUNK,
    KIND_EVIDENCE,
    KIND_FINALIZE,
    KIND_ONBOARDING,
    KIND_SWEEP,
    KIND_WATCHDOG,
    KIND_WEBHOOK,
)
from worker.jobs.notices import EVENT_TYPES, EventType, Notice, transaction_ended
from worker.jobs.onboarding import Mode, OnboardingJob, default_merchant_biz_id
from worker.jobs.retries import register_retries
from worker.jobs.sender import WorkSender

__all__ = [
    "DEAD_LETTER_KINDS",
    "EVENT_TYPES",
    "KIND_ARCHIVAL",
    "KIND_CHUNK",
    "KIND_EVIDENCE",
    "KIND_FINALIZE",
    "KIND_ONBOARDING",
    "KIND_SWEEP",
    "KIND_WATCHDOG",
    "KIND_WEBHOOK",
    "URGENT_PUBLISH_RETRY",
    "CelerySender",
    "EventType",
    "Mode",
    "Notice",
    "OnboardingJob",
    "WorkSender",
    "default_merchant_biz_id",
    "draining",
    "register_retries",
    "reset_draining",
    "start_draining",
    "transaction_ended",
]
