"""The reconciler and the archival sweep: whatever is overdue in the ledger is driven again.

A Celery message is only a hint; the ledger says what every transaction still needs and when.
Beat runs ``reconcile`` every ``IDV_RECONCILE_EVERY_S`` and ``archive_sweep`` every
``IDV_ARCHIVE_EVERY_S``; each takes a sweep lock with a fencing token (a second beat, or a
sweep that stalled past its lock, claims nothing) and claims every due transaction for one
attempt (``Ledger.claim``), so two sweeps or a duplicate message never do the work twice.

``reconcile`` (realtime index):

* ``initialized`` past its flow lifetime → ``abandoned``; else a *poll*: ``CheckResult`` in
  the realtime lane; ``ProcessNotCompleted`` puts it back ``IDV_RECONCILE_AFTER_S`` later;
* ``completed`` (or further) inside the evidence window → the onboarding run again
  (*redrive*: its message was lost, its worker died); past the window → archival index.

``archive_sweep`` (archival index): the onboarding run in *archive* mode, in the archival
lane with the deadline "provider deletion − ``IDV_ARCHIVE_MARGIN_S``", at most
``IDV_ARCHIVE_BATCH`` jobs in the archival queue at once. Anything the provider has already
deleted is ``expired``: a metric, a Sentry event and one log line each (``Ledger.transition``).

Each transaction the sweeps move to ``abandoned`` or ``expired`` is announced
(``onboarding.abandoned`` / ``onboarding.expired``, ``worker.jobs.Notice``) through the sender.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from worker.jobs import OnboardingJob, WorkSender, transaction_ended
from worker.ledger.forecast import Forecast, forecast
from worker.ledger.model import FINAL_STATES, Claim, Queue, State
from worker.ledger.store import Ledger, Reporter
from worker.observability import Metrics, NullMetrics, get_logger
from worker.settings import LedgerSettings

log = get_logger("ledger")


@dataclass(slots=True)
class SweepReport:
    """What one sweep did (for logs, metrics and tests)."""

    skipped: bool = False
    claimed: int = 0
    dispatched: dict[str, int] = field(default_factory=dict)
    expired: int = 0
    abandoned: int = 0

    def count(self, what: str) -> None:
        self.dispatched[what] = self.dispatched.get(what, 0) + 1


class Reconciler:
    """Re-drives overdue work (see the module docstring); dependencies are passed in."""

    def __init__(
        self,
        ledger: Ledger,
        dispatcher: WorkSender,
        settings: LedgerSettings,
        *,
        checkresult_qps: float = 10.0,
        metrics: Metrics | None = None,
        report: Reporter | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ledger = ledger
        self.dispatcher = dispatcher
        self.settings = settings
        self.checkresult_qps = checkresult_qps
        self.metrics: Metrics = metrics if metrics is not None else NullMetrics()
        self._report = report
        self._clock = clock

    # ------------------------------------------------------------------ sweeps

    def reconcile(self, limit: int = 2000) -> SweepReport:
        """One pass over the realtime index (and the provider's deletions)."""
        s = self.settings
        token = self.ledger.take_lock("reconcile", ttl_s=max(10.0, s.reconcile_every_s * 2))
        if token is None:
            return SweepReport(skipped=True)
        report = SweepReport()
        try:
            now = self._clock()
            self._expire_deleted(now, limit, report)
            hold = now + s.reconcile_after_s
            for tid in self.ledger.due("rt", now, limit):
                claim = self.ledger.claim(tid, "rt", hold_until=hold, fence=token, now=now)
                if isinstance(claim, Claim):
                    report.claimed += 1
                    self._realtime(claim, now, report)
                elif claim == "fenced":
                    break
            self._publish_gauges(now)
        finally:
            self.ledger.release_lock("reconcile", token)
        if report.claimed or report.expired:
            log.info(
                "reconcile: claimed=%d dispatched=%s expired=%d abandoned=%d",
                report.claimed, report.dispatched, report.expired, report.abandoned,
            )  # fmt: skip
        return report

    def archive_sweep(self, limit: int | None = None) -> SweepReport:
        """One pass over the archival index, bounded by the archival queue's backlog."""
        s = self.settings
        token = self.ledger.take_lock("archive", ttl_s=max(30.0, s.archive_every_s * 2))
        if token is None:
            return SweepReport(skipped=True)
        report = SweepReport()
        try:
            now = self._clock()
            room = (limit or s.archive_batch) - self.dispatcher.archival_backlog()
            # A queued archival job is taken well within this; a lost one comes due again.
            hold = now + max(4 * s.archive_every_s, 1800.0)
            for tid in self.ledger.due("ar", now, max(room, 0)):
                claim = self.ledger.claim(
                    tid, "ar", hold_until=hold, fence=token, lock="archive", now=now
                )
                if isinstance(claim, Claim):
                    report.claimed += 1
                    self._archive(claim, now, report)
                elif claim == "fenced":
                    break
        finally:
            self.ledger.release_lock("archive", token)
        if report.claimed:
            log.info("archival sweep: dispatched=%s expired=%d", report.dispatched, report.expired)
        return report

    def take_over(self, tid: str) -> str:
        """A run's lease on ``tid`` expired without a release: make it due now and send it.

        Called by a worker's heartbeat (``worker.stores.takeover``) within seconds of the
        holder's death, rather than when the run's hold in the ledger runs out. The claim
        moves the due time, so a sweep or a second heartbeat does not send it too.
        Returns what happened: ``sent:<reason>``, or why not (``final``, ``missing``...).
        """
        entry = self.ledger.get(tid)
        if entry is None:
            return "missing"
        if entry.state in FINAL_STATES or entry.queue not in ("rt", "ar"):
            return "final"
        queue: Queue = "ar" if entry.queue == "ar" else "rt"
        now = self._clock()
        self.ledger.transition(tid, entry.state, queue=queue, due=now, allowed_from=(entry.state,))
        s = self.settings
        hold = now + (s.reconcile_after_s if queue == "rt" else max(4 * s.archive_every_s, 1800.0))
        claim = self.ledger.claim(tid, queue, hold_until=hold, now=now)
        if not isinstance(claim, Claim):
            return claim
        report = SweepReport()
        if queue == "rt":
            self._realtime(claim, now, report)
        else:
            self._archive(claim, now, report)
        self.metrics.incr("idv_takeovers", kind="archival" if queue == "ar" else "onboarding")
        return "sent:" + ",".join(report.dispatched) if report.dispatched else "expired"

    def forecast(self) -> Forecast:
        """The archival plan now, at ``checkresult_qps`` (the quota of the onboarding product's
        CheckResult)."""
        return forecast(
            self.ledger,
            now=self._clock(),
            quota_qps=self.checkresult_qps,
            reserve=self.settings.archive_realtime_reserve,
        )

    # ------------------------------------------------------------------ decisions

    def _realtime(self, claim: Claim, now: float, report: SweepReport) -> None:
        s = self.settings
        tid = claim.transaction_id
        if claim.state is State.INITIALIZED:
            if now >= claim.created_at + s.flow_lifetime_s:
                reason = "no completion within the flow's lifetime"
                if self.ledger.transition(tid, State.ABANDONED, reason=reason):
                    self.dispatcher.notify(
                        transaction_ended(tid, "abandoned", at=now, reason=reason)
                    )
                self.metrics.incr("idv_reconcile_redriven", reason="abandoned")
                report.abandoned += 1
                return
            self.dispatcher.onboard(self._job(claim, "poll", completed_at=now))
            self._redriven("poll", report)
            return
        completed = claim.completed_at or claim.created_at
        if now < completed + self.ledger.evidence_window_s:
            self.dispatcher.onboard(self._job(claim, "redrive", completed_at=completed))
            self._redriven("stalled", report)
            return
        # The evidence window is over: what is left is archival.
        self._move(claim, "ar", now)
        self._redriven("to_archival", report)

    def _archive(self, claim: Claim, now: float, report: SweepReport) -> None:
        if now >= claim.deletes_at:
            self._expire(claim.transaction_id, report)
            return
        completed = claim.completed_at or claim.created_at
        archive_by = max(now + 60.0, claim.deletes_at - self.settings.archive_margin_s)
        job = self._job(claim, "archive", completed_at=completed, archive_by=archive_by)
        self.dispatcher.archive(job)
        self._redriven("archive", report)

    def _job(
        self, claim: Claim, mode: str, *, completed_at: float, archive_by: float | None = None
    ) -> OnboardingJob:
        return OnboardingJob.model_validate(
            {
                "transaction_id": claim.transaction_id,
                "product_code": claim.product_code,
                "merchant_biz_id": claim.merchant_biz_id,
                "completed_at": completed_at,
                "window_s": self.ledger.evidence_window_s,
                "mode": mode,
                "archive_by": archive_by,
            }
        )

    def _move(self, claim: Claim, queue: Queue, due: float) -> None:
        self.ledger.transition(claim.transaction_id, claim.state, queue=queue, due=due)

    def _redriven(self, reason: str, report: SweepReport) -> None:
        self.metrics.incr("idv_reconcile_redriven", reason=reason)
        report.count(reason)

    def _expire_deleted(self, now: float, limit: int, report: SweepReport) -> None:
        for tid in self.ledger.deleting_before(now, limit):
            self._expire(tid, report)

    def _expire(self, tid: str, report: SweepReport) -> None:
        reason = "the provider deleted the result before it was archived"
        if self.ledger.transition(tid, State.EXPIRED, reason=reason):
            self.dispatcher.notify(
                transaction_ended(tid, "expired", at=self._clock(), reason=reason)
            )
            report.expired += 1  # counted, logged and reported by the ledger

    def _publish_gauges(self, now: float) -> None:
        plan = self.forecast()
        for state, n in plan.counts.items():
            self.metrics.gauge("idv_ledger_transactions", n, state=state)
        self.metrics.gauge("idv_archival_pending", plan.pending)
        self.metrics.gauge("idv_archival_at_risk", plan.at_risk)
        self.metrics.gauge("idv_archival_forecast_fits", 1.0 if plan.fits else 0.0)
        self.metrics.gauge("idv_archival_forecast_expiring", plan.will_expire)
        if plan.fits:
            return
        # Once an hour while it does not fit, not at every sweep.
        key = f"{self.ledger.lock_key('forecast-alert')}"
        if self.ledger.redis.set(key, "1", nx=True, ex=3600):
            log.error("archival forecast: %s", plan.summary())
            if self._report is not None:
                self._report("archival forecast does not fit before the deadlines", flow="archival")
