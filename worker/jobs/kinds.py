"""Every kind of work that can end in a dead letter (and be retried with ``dlq retry``)."""

from __future__ import annotations

KIND_ONBOARDING = "onboarding"
"""The fetch/write-back of one transaction (also its lease kind)."""
KIND_EVIDENCE = "evidence"
"""Evidence that could not be archived in time (lost)."""
KIND_ARCHIVAL = "archival"
"""An archival run that failed for good."""
KIND_WEBHOOK = "webhook"
"""A result webhook that was never accepted."""
KIND_CHUNK = "batch-chunk"
"""A batch chunk whose task failed for good."""
KIND_WATCHDOG = "batch-watchdog"
"""A batch watchdog that failed for good."""
KIND_FINALIZE = "batch-finalize"
"""A batch's export of results that failed for good."""
KIND_SWEEP = "ledger-sweep"
"""A reconcile, batch or archival sweep that failed (the next beat tick runs it again; no retry)."""

DEAD_LETTER_KINDS: tuple[str, ...] = (
    KIND_ONBOARDING,
    KIND_EVIDENCE,
    KIND_ARCHIVAL,
    KIND_WEBHOOK,
    KIND_CHUNK,
    KIND_WATCHDOG,
    KIND_FINALIZE,
    KIND_SWEEP,
)
