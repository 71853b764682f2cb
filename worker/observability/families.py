"""The registry of metric families: name, type, help text, labels and known label values.

Every family emitted by this code base is listed here, so the exposition can give each one its
``# HELP`` and ``# TYPE`` and show alerting series at 0 before the first event (a counter that
appears only at its first increment hides that increment from ``increase()``). A series is
created at 0 for every combination of known values of its labels; a label whose values are
open (``code``, ``bucket``) gets its values from the scrape (``known`` values) or not at all.

Names are exposition names: counters without ``_total`` (the sample is ``<name>_total``),
histograms without ``_bucket``/``_sum``/``_count``.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from worker.observability.store import ALLOWED_LABELS, metric_name

Kind = Literal["counter", "gauge", "histogram"]

FLOWS = ("onboarding", "batch", "webhook", "ledger", "archival")
LANES = ("realtime", "archival", "bulk")
CALLBACK_OUTCOMES = ("accepted", "duplicate", "forbidden", "unknown", "invalid", "too_large",
                     "unavailable", "error", "timeout", "rate_limited")  # fmt: skip
OTHER = "other"
# Codes of the errors that stop work and alert (``IdvError.alert``) that a metric label keeps:
# the provider's account codes; any other code (credentials, configuration) is counted as
# ``other`` (see ``account_code``).
ACCOUNT_CODES = ("Forbidden.RAMUserAccessDenied", "Forbidden.AccountAccessDenied", OTHER)


def account_code(code: str) -> str:
    """``code`` as the value of a ``code``/``reason`` label: a known account code, else
    ``other``. Every series then exists at 0 before its first event, so an alert's
    ``increase()`` sees that event; the exact code is in the log line, the dead letter and
    the Sentry event."""
    return code if code in ACCOUNT_CODES else OTHER


@dataclass(frozen=True)
class Family:
    """One metric family. ``values`` lists the known values of some labels."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Gauges are not created at 0 unless asked: 0 would be a false reading.
    zero: bool = True

    def __post_init__(self) -> None:
        if metric_name(self.name) != self.name:
            raise ValueError(f"family {self.name!r} must be in the idv_ namespace")
        unknown = set(self.labels) - ALLOWED_LABELS
        if unknown or "le" in self.labels:
            raise ValueError(f"family {self.name}: labels {sorted(unknown)} are not allowed")

    def initial(self, known: Mapping[str, tuple[str, ...]]) -> Iterator[dict[str, str]]:
        """Label sets to show at 0 before any event (none if a label has no known value)."""
        if not self.zero:
            return
        choices = [self.values.get(label) or known.get(label) or () for label in self.labels]
        for combo in itertools.product(*choices):
            yield dict(zip(self.labels, combo, strict=True))


def _c(name: str, help: str, *labels: str, **values: tuple[str, ...]) -> Family:
    return Family(name, "counter", help, labels, values)


def _h(name: str, help: str, *labels: str, **values: tuple[str, ...]) -> Family:
    return Family(name, "histogram", help, labels, values)


BUILTIN: tuple[Family, ...] = (
    # tasks (tasks/base.py)
    _c("idv_tasks", "Task runs by flow and outcome (ok, retry, dead_letter, error).",
       "flow", "outcome", flow=FLOWS, outcome=("ok", "retry", "dead_letter", "error")),
    _h("idv_task_seconds", "Duration of one task run.", "flow", flow=FLOWS),
    _c("idv_dead_letters", "Work moved to the dead-letter store, by kind.", "kind",
       kind=("onboarding", "evidence", "webhook", "batch-chunk", "batch-watchdog",
             "batch-finalize", "archival", "ledger-sweep")),
    _c("idv_account_errors", "Work stopped by an alerting error: the provider refused the "
       "account (Forbidden.*; other: credentials, configuration); page someone.", "flow",
       "code", flow=FLOWS, code=ACCOUNT_CODES),
    # onboarding (worker/onboarding.py, tasks/onboarding.py)
    _c("idv_onboarding", "Onboarding transactions finished, by outcome.", "outcome",
       outcome=("complete", "evidence_lost", "already_done", "expired")),
    _c("idv_callback_mismatch", "Callbacks whose claim disagreed with CheckResult.", "kind",
       kind=("passed",)),
    # callbacks (worker/callbacks.py, worker/receiver.py)
    _c("idv_callbacks", "Provider callbacks received, by outcome.", "outcome",
       outcome=CALLBACK_OUTCOMES),
    _h("idv_callback_ack_seconds", "Time to answer a provider callback.", "outcome",
       outcome=CALLBACK_OUTCOMES),
    # evidence (worker/evidence.py, worker/evidence_download.py)
    _c("idv_evidence", "Evidence files archived to S3, by kind and outcome.", "kind", "outcome",
       kind=("video", "image"), outcome=("stored", "reused")),
    _c("idv_evidence_bytes", "Bytes of evidence stored in S3.", "kind", kind=("video",)),
    _c("idv_evidence_refresh", "Fresh evidence links asked of the provider, by reason.",
       "reason", reason=("missing", "expired", "broken")),
    _c("idv_evidence_resumes", "Evidence downloads resumed after a broken transfer.", "kind",
       kind=("video",)),
    _c("idv_evidence_lost", "Evidence that could not be archived before its window closed.",
       "kind", kind=("video",)),
    # S3 store (worker/storage/, worker/evidence/uploads.py, tasks/storage.py)
    _c("idv_s3_upload_aborts", "Stale multipart uploads handled by the sweep, by outcome "
       "(unsupported: the store has no AbortMultipartUpload).", "outcome",
       outcome=("aborted", "gone", "failed", "unsupported")),
    Family("idv_s3_stale_uploads", "gauge", "Stale multipart uploads left open after the last "
           "sweep (their parts still cost storage).", zero=False),
    _c("idv_s3_sse_probe", "Start-up SSE probes of the S3 store, by outcome.", "outcome",
       outcome=("applied", "accepted-silently", "reported-other", "refused", "disabled",
                "write-failed")),
    # batch (worker/batch/)
    _c("idv_batch_items", "Batch items finished, by outcome.", "outcome",
       outcome=("done", "failed", "invalid", "uncertain", "duplicate")),
    _c("idv_batch_paused", "Batches paused by the provider refusing the account, by code.",
       "reason", reason=ACCOUNT_CODES),
    _c("idv_batches", "Batches finished, by outcome.", "outcome", outcome=("completed",)),
    # webhooks (tasks/webhook.py)
    _c("idv_webhooks", "Webhook attempts, by outcome (dead: attempts ran out or refused).",
       "outcome", outcome=("delivered", "failed", "dead")),
    # webhook outbox (worker/events/delivery.py; each worker's heartbeat publishes them)
    Family("idv_webhook_outbox_pending", "gauge", "Webhook events in the outbox not yet "
           "delivered nor dead-lettered."),
    Family("idv_webhook_outbox_oldest_seconds", "gauge", "How long the oldest pending webhook "
           "event has waited (0 when none)."),
    # limiter (worker/ratelimit.py)
    _h("idv_limiter_wait_seconds", "Time from asking the limiter for a slot to its start (its "
       "count: slots granted, one per provider call).", "bucket", "lane", lane=LANES),
    _c("idv_limiter_refused", "Limiter slots refused (deadline, max_wait).", "bucket", "lane",
       "reason", lane=LANES, reason=("deadline", "max_wait")),
    _c("idv_limiter_throttled", "Throttling.* answers from the provider (someone else uses the "
       "quota, or the quota is lower than configured).", "bucket"),
    Family("idv_limiter_rate_factor", "gauge", "Share of the quota in use: (1 - learned "
           "margin) x adaptive factor (1 = full quota).", ("bucket",), zero=False),
    _c("idv_limiter_unavailable", "Limiter Redis unreachable: calls not made (failed closed).",
       "bucket"),
    # ledger, reconciler and archival (worker/ledger/)
    Family("idv_ledger_transactions", "gauge", "Transactions in the ledger, by state (written "
           "by each reconcile sweep).", ("state",), zero=False),
    Family("idv_archival_pending", "gauge", "Open transactions not archived yet (each needs a "
           "CheckResult before the provider deletes it).", zero=False),
    Family("idv_archival_at_risk", "gauge", "Open transactions the provider deletes within a "
           "day.", zero=False),
    Family("idv_archival_forecast_fits", "gauge", "1 when the pending archival work fits the "
           "quota left over by realtime work before every deadline, else 0.", zero=False),
    Family("idv_archival_forecast_expiring", "gauge", "Transactions the forecast says will be "
           "deleted before they are archived.", zero=False),
    _c("idv_archival_expired", "Transactions the provider deleted before they were archived "
       "(lost)."),
    _c("idv_archival", "Archival runs, by outcome.", "outcome",
       outcome=("archived", "evidence_lost")),
    _c("idv_reconcile_redriven", "Work re-driven by the reconciler, by reason.", "reason",
       reason=("poll", "stalled", "to_archival", "archive", "abandoned")),
    _c("idv_takeovers", "Work whose holder died, taken over after its lease expired, by kind.",
       "kind", kind=("chunk", "onboarding", "archival")),
    # broker queues (read at scrape time)
    Family("idv_queue_length", "gauge", "Messages waiting in a Celery queue (all priorities).",
           ("queue",)),
    Family("idv_queue_oldest_age_seconds", "gauge", "Age of the oldest waiting message "
           "(0 when the queue is empty; absent when its messages carry no enqueued_at).",
           ("queue",), zero=False),
    # autoscaling (worker/observability/demand.py; read at scrape time)
    Family("idv_lane_desired_workers", "gauge", "Worker pods a lane can use now: enough to "
           "finish its work by IDV_SCALE_DRAIN_S, never more than its quota keeps busy.",
           ("lane",), {"lane": ("realtime", "webhooks", "archival", "bulk")}, zero=False),
)  # fmt: skip


class FamilyRegistry:
    """Families by name; other code may add its own (``register``)."""

    def __init__(self, families: tuple[Family, ...] = BUILTIN) -> None:
        self._lock = threading.Lock()
        self._families = {f.name: f for f in families}

    def register(self, family: Family) -> None:
        """Add a family; registering the same definition twice is harmless."""
        with self._lock:
            existing = self._families.get(family.name)
            if existing is not None and existing != family:
                raise ValueError(f"metric family {family.name} is already registered differently")
            self._families[family.name] = family

    def get(self, name: str) -> Family | None:
        return self._families.get(name)

    def __iter__(self) -> Iterator[Family]:
        with self._lock:
            return iter(list(self._families.values()))


FAMILIES = FamilyRegistry()
