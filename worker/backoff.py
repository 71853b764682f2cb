"""Jittered exponential backoff, written once for every retry loop of the project, and the
retry policy of each kind of work (base, cap and bound in one place)."""

from __future__ import annotations

import random
from dataclasses import dataclass

_rng = random.Random()


def jittered(
    attempt: int, *, base_s: float, cap_s: float, rng: random.Random | None = None
) -> float:
    """A delay for retry number ``attempt`` (0-based): uniform in [ceiling/2, ceiling].

    ``ceiling = min(cap_s, base_s * 2**attempt)``; the jitter keeps retries of many workers
    from arriving together.
    """
    ceiling = min(cap_s, base_s * (2 ** min(max(attempt, 0), 62)))
    return (rng or _rng).uniform(ceiling / 2, ceiling)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How one kind of work is tried again: jittered backoff from ``base_s`` up to ``cap_s``,
    at most ``max_attempts`` tries in all (the first included; None: bounded elsewhere, by a
    setting or by ``within_s``), and no new try once ``within_s`` seconds have passed."""

    base_s: float
    cap_s: float
    max_attempts: int | None = None
    within_s: float | None = None

    @property
    def max_retries(self) -> int:
        """Tries after the first (Celery's ``max_retries``)."""
        if self.max_attempts is None:
            raise ValueError("this policy is bounded by a setting, not by a number of attempts")
        return self.max_attempts - 1

    def delay(self, retries: int, rng: random.Random | None = None) -> float:
        """The pause before the next try, after ``retries`` retries (0 before the first)."""
        return jittered(retries, base_s=self.base_s, cap_s=self.cap_s, rng=rng)


# Every retry bound of the project that is not an ``IDV_*`` setting, by kind of work.
# Celery tasks (``tasks.*``; every countdown is also capped by ``worker.queues.MAX_COUNTDOWN_S``):
TASK = RetryPolicy(base_s=2.0, cap_s=300.0, max_attempts=11)
LEDGER_SWEEP_TASK = RetryPolicy(base_s=2.0, cap_s=300.0, max_attempts=4)
ARCHIVAL_TASK = RetryPolicy(base_s=5.0, cap_s=300.0, max_attempts=101)
ONBOARDING_TASK = RetryPolicy(base_s=1.0, cap_s=30.0, max_attempts=201)
STORAGE_SWEEP_TASK = RetryPolicy(base_s=2.0, cap_s=300.0, max_attempts=1)
# A backstop only: deliveries stop at IDV_WEBHOOK_MAX_ATTEMPTS, checked in the task.
WEBHOOK_TASK = RetryPolicy(base_s=5.0, cap_s=300.0, max_attempts=101)
# A task body run again while Redis is unreachable (a failover, a restart).
REDIS_OUTAGE = RetryPolicy(base_s=0.5, cap_s=5.0, within_s=60.0)
# One provider call (``worker.cloudauth``): throttled and transient errors.
PROVIDER_CALL = RetryPolicy(base_s=0.1, cap_s=2.0, max_attempts=3)
# One batch row inside a chunk task; its attempts are IDV_BATCH_ITEM_ATTEMPTS.
BATCH_ITEM = RetryPolicy(base_s=0.5, cap_s=10.0)
# One part of a multipart upload, after botocore's own attempts.
UPLOAD_PART = RetryPolicy(base_s=0.5, cap_s=4.0, max_attempts=3)
# A broken evidence download resumed on the same link before asking for a fresh one.
EVIDENCE_RESUME = RetryPolicy(base_s=0.2, cap_s=5.0, max_attempts=3)
