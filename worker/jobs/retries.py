"""``idv-worker dlq retry``: how each dead-letter kind is sent again, through a ``WorkSender``."""

from __future__ import annotations

from worker.jobs.kinds import (
    KIND_ARCHIVAL,
    KIND_CHUNK,
    KIND_EVIDENCE,
    KIND_FINALIZE,
    KIND_ONBOARDING,
    KIND_WATCHDOG,
    KIND_WEBHOOK,
)
from worker.jobs.onboarding import OnboardingJob
from worker.jobs.sender import WorkSender
from worker.keys import validate_id
from worker.stores import DeadLetter, DeadLetterStore


def _job(entry: DeadLetter) -> OnboardingJob:
    job = entry.payload.get("job")
    if not isinstance(job, dict):
        raise ValueError(f"dead letter {entry.kind}/{entry.id} carries no job to retry")
    return OnboardingJob.from_message(job)


def _batch(entry: DeadLetter) -> str:
    batch_id = entry.payload.get("batch")
    if not isinstance(batch_id, str):
        raise ValueError(f"dead letter {entry.kind}/{entry.id} names no batch")
    return batch_id


def _chunk(entry: DeadLetter) -> int:
    number = entry.payload.get("chunk")
    if not isinstance(number, int):
        raise ValueError(f"dead letter {entry.kind}/{entry.id} names no chunk")
    return number


def register_retries(store: DeadLetterStore, sender: WorkSender) -> None:
    """Register the retry of every dead-letter kind on ``store``."""
    store.register_retry(KIND_ONBOARDING, lambda e: sender.onboard(_job(e), late=True))
    store.register_retry(KIND_EVIDENCE, lambda e: sender.onboard(_job(e), late=True))
    store.register_retry(KIND_ARCHIVAL, lambda e: sender.archive(_job(e)))
    store.register_retry(
        KIND_WEBHOOK, lambda e: sender.deliver(validate_id(e.id, "transaction_id"))
    )

    def chunk(entry: DeadLetter) -> None:
        sender.chunks(_batch(entry), [_chunk(entry)])

    store.register_retry(KIND_CHUNK, chunk)
    store.register_retry(KIND_WATCHDOG, lambda e: sender.watchdog(_batch(e), 0.0))
    store.register_retry(KIND_FINALIZE, lambda e: sender.finalize(_batch(e)))
