"""The ledger's state machine, callback verdicts, claims and sweeps on a real Redis."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import redis

from worker.cloudauth import DEFAULT_QUOTAS
from worker.jobs import Notice, OnboardingJob
from worker.keys import RedisKeys
from worker.ledger import Claim, Ledger, Reconciler, Reporter, State
from worker.observability import Metrics, RedisMetrics
from worker.ratelimit import QuotaTable
from worker.settings import Settings, load_settings


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class RecordingDispatcher:
    """Keeps the jobs a sweep sends instead of giving them to Celery."""

    onboarded: list[OnboardingJob] = field(default_factory=list)
    archived: list[OnboardingJob] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    backlog: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def onboard(self, job: OnboardingJob) -> None:
        with self.lock:
            self.onboarded.append(job)

    def archive(self, job: OnboardingJob) -> None:
        with self.lock:
            self.archived.append(job)

    def archival_backlog(self) -> int:
        return self.backlog

    def notify(self, notice: Notice) -> None:
        with self.lock:
            self.notices.append(notice)


def make_ledger(
    client: redis.Redis,
    settings: Settings,
    clock: Clock,
    *,
    metrics: Metrics | None = None,
    report: Reporter | None = None,
) -> Ledger:
    """The ledger as the worker wires it from ``settings``, on ``clock``."""
    return Ledger(
        client,
        RedisKeys(settings.redis.namespace),
        settings.ledger,
        evidence_window_s=settings.onboarding.evidence_window_s,
        require_known=settings.callbacks.callback_require_known,
        clock=clock,
        metrics=metrics,
        report=report,
    )


def make_reconciler(
    ledger: Ledger, dispatcher: RecordingDispatcher, settings: Settings, clock: Clock
) -> Reconciler:
    """The reconciler as the worker wires it: at the onboarding product's CheckResult quota."""
    qps = QuotaTable(settings.quotas, DEFAULT_QUOTAS).quota_for(
        settings.onboarding.onboarding_product, "CheckResult"
    )
    return Reconciler(ledger, dispatcher, settings.ledger, checkresult_qps=qps, clock=clock)


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return load_settings(
        redis_url=redis_url,
        reconcile_after_s=120,
        flow_lifetime_s=3600,
        provider_retention_s=30 * 86400,
        archive_margin_s=86400,
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(redis_client: redis.Redis, settings: Settings, clock: Clock) -> Ledger:
    return make_ledger(redis_client, settings, clock)


@pytest.fixture
def dispatcher() -> RecordingDispatcher:
    return RecordingDispatcher()


@pytest.fixture
def reconciler(
    ledger: Ledger, dispatcher: RecordingDispatcher, settings: Settings, clock: Clock
) -> Iterator[Reconciler]:
    return make_reconciler(ledger, dispatcher, settings, clock)


def test_a_started_flow_is_polled_after_the_reconcile_delay(
    ledger: Ledger, reconciler: Reconciler, dispatcher: RecordingDispatcher, clock: Clock
) -> None:
    assert ledger.record_start("tx1", "eKYC", "biz1")
    assert not ledger.record_start("tx1", "eKYC", "biz1")  # known: nothing regressed
    assert reconciler.reconcile().claimed == 0
    clock.now += 121
    report = reconciler.reconcile()
    assert report.dispatched == {"poll": 1}
    job = dispatcher.onboarded[0]
    assert (job.mode, job.product_code, job.merchant_biz_id) == ("poll", "eKYC", "biz1")
    # Claimed for this attempt: a second sweep right away takes nothing.
    assert reconciler.reconcile().claimed == 0
    entry = ledger.get("tx1")
    assert entry is not None
    assert entry.attempts == 1
    assert entry.state is State.INITIALIZED


def test_a_poll_that_finds_nothing_comes_back_later_and_gives_up_at_the_lifetime(
    ledger: Ledger, reconciler: Reconciler, clock: Clock
) -> None:
    ledger.record_start("tx1", "eKYC", "biz1")
    clock.now += 121
    reconciler.reconcile()
    ledger.poll_later("tx1")
    entry = ledger.get("tx1")
    assert entry is not None
    assert entry.due_at == pytest.approx(clock.now + 120)
    clock.now += 3600
    report = reconciler.reconcile()
    assert report.abandoned == 1
    entry = ledger.get("tx1")
    assert entry is not None
    assert entry.state is State.ABANDONED
    assert entry.due_at is None
    assert ledger.counts()[State.ABANDONED] == 1
    assert ledger.counts()[State.INITIALIZED] == 0


def test_the_ledger_decides_what_a_callback_is(ledger: Ledger, clock: Clock) -> None:
    ledger.record_start("tx1", "FACE_LIVENESS", "realbiz")
    first = ledger.on_callback("tx1", "eKYC", "guessed")
    # The ids from Initialize win over what an unsigned callback claims.
    assert (first.status, first.product_code, first.merchant_biz_id) == (
        "accepted",
        "FACE_LIVENESS",
        "realbiz",
    )
    assert ledger.on_callback("tx1", "eKYC", "guessed").status == "duplicate"
    # Work overdue (its message was lost): a resent callback is taken again.
    clock.now += 121
    again = ledger.on_callback("tx1", "eKYC", "guessed")
    assert again.status == "accepted"
    assert again.completed_at == first.completed_at
    assert ledger.finish("tx1", evidence="stored")
    clock.now += 1000
    # Done: a resent callback after success is a repeat.
    assert ledger.on_callback("tx1", "eKYC", "guessed").status == "duplicate"
    entry = ledger.get("tx1")
    assert entry is not None
    assert entry.state is State.ARCHIVED
    assert list(entry.history) == [
        State.INITIALIZED,
        State.COMPLETED,
        State.RESULT_STORED,
        State.EVIDENCE_STORED,
        State.ARCHIVED,
    ]


def test_unknown_callbacks_are_refused_when_required(
    redis_client: redis.Redis, settings: Settings, clock: Clock
) -> None:
    strict = make_ledger(redis_client, settings.replace(callback_require_known=True), clock)
    assert strict.on_callback("txX", "eKYC", "b").status == "unknown"
    assert strict.get("txX") is None
    lenient = make_ledger(redis_client, settings, clock)
    assert lenient.on_callback("txX", "eKYC", "b").status == "accepted"


def test_stalled_work_is_redriven_inside_the_window_then_archived(
    ledger: Ledger, reconciler: Reconciler, dispatcher: RecordingDispatcher, clock: Clock
) -> None:
    ledger.on_callback("tx1", "eKYC", "b")
    clock.now += 121
    assert reconciler.reconcile().dispatched == {"stalled": 1}
    assert dispatcher.onboarded[0].mode == "redrive"
    # Still nothing stored after the evidence window: archival takes over.
    clock.now += 1800
    assert reconciler.reconcile().dispatched == {"to_archival": 1}
    report = reconciler.archive_sweep()
    assert report.dispatched == {"archive": 1}
    job = dispatcher.archived[0]
    assert job.mode == "archive"
    assert job.archival
    entry = ledger.get("tx1")
    assert entry is not None
    assert job.archive_by == pytest.approx(entry.deletes_at - 86400)


def test_the_archival_sweep_respects_the_queue_backlog(
    ledger: Ledger, reconciler: Reconciler, dispatcher: RecordingDispatcher, clock: Clock
) -> None:
    for n in range(10):
        ledger.record_completed(f"tx{n}", "eKYC", "b", completed_at=clock.now - 7200)
    dispatcher.backlog = 497
    assert reconciler.archive_sweep(limit=500).claimed == 3
    dispatcher.backlog = 0
    assert reconciler.archive_sweep(limit=500).claimed == 7
    assert len({j.transaction_id for j in dispatcher.archived}) == 10


EXPIRED_SERIES = "idv_archival_expired_total"


@dataclass
class Reported:
    events: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def __call__(self, message: str, **tags: str) -> None:
        self.events.append((message, tags))


@pytest.fixture
def reported() -> Reported:
    return Reported()


@pytest.fixture
def counted_ledger(
    redis_client: redis.Redis, settings: Settings, clock: Clock, reported: Reported
) -> Ledger:
    """A ledger that counts into the shared metrics store and reports to ``reported``."""
    metrics = RedisMetrics(redis_client, settings.redis.namespace)
    return make_ledger(redis_client, settings, clock, metrics=metrics, report=reported)


def _expired_count(redis_client: redis.Redis, settings: Settings) -> float:
    metrics = RedisMetrics(redis_client, settings.redis.namespace)
    return metrics.snapshot().get(EXPIRED_SERIES, 0.0)


def test_what_the_provider_deleted_before_archival_expires_loudly(
    counted_ledger: Ledger,
    dispatcher: RecordingDispatcher,
    settings: Settings,
    clock: Clock,
    reported: Reported,
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ledger = counted_ledger
    reconciler = make_reconciler(ledger, dispatcher, settings, clock)
    ledger.record_completed("old", "eKYC", "b", completed_at=clock.now - 30 * 86400 + 10)
    clock.now += 11
    report = reconciler.reconcile()
    assert report.expired == 1
    entry = ledger.get("old")
    assert entry is not None
    assert entry.state is State.EXPIRED
    assert entry.reason
    assert _expired_count(redis_client, settings) == 1
    assert reported.events == [("transaction expired before archival", {"flow": "archival"})]
    assert "old expired before it was archived" in caplog.text
    assert reconciler.reconcile().expired == 0  # a final state: nothing counted twice
    assert _expired_count(redis_client, settings) == 1


def test_every_move_to_expired_is_counted_once_whoever_makes_it(
    counted_ledger: Ledger,
    settings: Settings,
    clock: Clock,
    reported: Reported,
    redis_client: redis.Redis,
) -> None:
    ledger = counted_ledger
    for tid in ("lost", "never", "kept"):
        ledger.record_completed(tid, "eKYC", "b", completed_at=clock.now - 7200)
    # an archival run that finds the transaction gone (the onboarding path)
    ledger.gone("lost", archival=True, reason="CheckResult: TransactionIdInvalid")
    ledger.gone("lost", archival=True, reason="CheckResult: TransactionIdInvalid")
    # a realtime run that finds it gone: abandoned, not lost
    ledger.gone("never", archival=False, reason="CheckResult: TransactionIdInvalid")
    # a plain transition (what `ledger` commands and sweeps use)
    assert ledger.transition("kept", State.EXPIRED, reason="deleted")
    assert not ledger.transition("kept", State.EXPIRED, reason="deleted again")
    states = {tid: ledger.get(tid).state for tid in ("lost", "never", "kept")}  # type: ignore[union-attr]
    assert states == {"lost": State.EXPIRED, "never": State.ABANDONED, "kept": State.EXPIRED}
    assert _expired_count(redis_client, settings) == 2
    assert len(reported.events) == 2
    assert ledger.counts()[State.EXPIRED] == 2


def test_two_sweeps_at_once_claim_each_transaction_once(
    redis_client: redis.Redis, settings: Settings, clock: Clock
) -> None:
    ledger = make_ledger(redis_client, settings, clock)
    for n in range(300):
        ledger.record_start(f"tx{n}", "eKYC", "b")
    clock.now += 121
    dispatcher = RecordingDispatcher()
    sweepers = [make_reconciler(ledger, dispatcher, settings, clock) for _ in range(2)]
    threads = [threading.Thread(target=s.reconcile) for s in sweepers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Whichever sweep got the lock did the work; nothing was sent twice.
    tids = [job.transaction_id for job in dispatcher.onboarded]
    assert len(tids) == len(set(tids)) == 300


def test_a_stale_fencing_token_claims_nothing(ledger: Ledger, clock: Clock) -> None:
    ledger.record_start("tx1", "eKYC", "b")
    clock.now += 121
    old = ledger.take_lock("reconcile", ttl_s=0.05)
    assert old is not None
    ledger.redis.delete(ledger.lock_key("reconcile"))  # the old sweep's lock ran out
    new = ledger.take_lock("reconcile", ttl_s=10)
    assert new is not None
    assert int(new) > int(old)
    assert ledger.claim("tx1", "rt", hold_until=clock.now + 60, fence=old) == "fenced"
    assert isinstance(ledger.claim("tx1", "rt", hold_until=clock.now + 60, fence=new), Claim)


def test_extend_never_moves_a_due_time_back(ledger: Ledger, clock: Clock) -> None:
    ledger.on_callback("tx1", "eKYC", "b")
    entry = ledger.get("tx1")
    assert entry is not None
    assert entry.due_at is not None
    assert not ledger.extend("tx1", entry.due_at - 10)
    assert ledger.extend("tx1", entry.due_at + 10)


def test_forecast_says_early_whether_archival_fits(
    ledger: Ledger, reconciler: Reconciler, settings: Settings, clock: Clock
) -> None:
    for n in range(50):
        ledger.record_completed(f"a{n}", "eKYC", "b", completed_at=clock.now - 29.5 * 86400)
    plan = reconciler.forecast()
    assert plan.pending == 50
    assert plan.at_risk == 50
    assert plan.fits
    assert "fits" in plan.summary()
    tight = make_reconciler(
        ledger, RecordingDispatcher(), settings.replace(quotas={"eKYC": 0.001}), clock
    )
    plan = tight.forecast()
    assert not plan.fits
    assert plan.will_expire > 0
    assert "will expire" in plan.summary()


def test_finished_entries_expire_after_the_grace_period(
    ledger: Ledger, redis_client: redis.Redis, settings: Settings
) -> None:
    ledger.on_callback("tx1", "eKYC", "b")
    ledger.finish("tx1", evidence="lost", reason="no link")
    ttl = redis_client.pttl(ledger.key("tx1"))
    assert 0 < ttl <= settings.ledger.ledger_grace_s * 1000
    assert redis_client.zscore(ledger.index_key("rt"), "tx1") is None
    assert redis_client.zscore(ledger.deletes_key, "tx1") is None


def _to_final(ledger: Ledger, tid: str, final: State) -> None:
    ledger.record_start(tid, "eKYC", "biz1")
    if final is State.ARCHIVED:
        assert ledger.finish(tid, evidence="stored")
    elif final is State.EXPIRED:
        ledger.gone(tid, archival=True, reason="deleted by the provider")
    else:
        ledger.gone(tid, archival=False, reason="never completed")
    entry = ledger.get(tid)
    assert entry is not None
    assert entry.state is final


@pytest.mark.parametrize("final", [State.ARCHIVED, State.EXPIRED, State.ABANDONED])
def test_a_final_state_is_never_left(ledger: Ledger, final: State) -> None:
    _to_final(ledger, "tx1", final)
    counts = ledger.counts()
    for to in State:
        if to is final:
            continue
        assert not ledger.transition("tx1", to), to
        assert not ledger.transition("tx1", to, allowed_from=(final,)), to  # even if listed
    # The named ways out: an archival sweep that finds it gone, a late callback, a re-drive.
    ledger.gone("tx1", archival=True, reason="gone")
    ledger.gone("tx1", archival=False, reason="gone")
    ledger.redrive_now("tx1")
    ledger.on_callback("tx1", "eKYC", "biz1")
    entry = ledger.get("tx1")
    assert entry is not None
    assert entry.state is final
    assert entry.due_at is None
    assert ledger.counts() == counts


def test_an_archived_transaction_does_not_become_expired(ledger: Ledger) -> None:
    _to_final(ledger, "tx1", State.ARCHIVED)
    ledger.gone("tx1", archival=True, reason="provider deleted it at day 30")
    entry = ledger.get("tx1")
    assert entry is not None
    assert entry.state is State.ARCHIVED
    assert ledger.counts()[State.EXPIRED] == 0
    # Its neighbour, still waiting for archival, does expire.
    ledger.record_start("tx2", "eKYC", "biz2")
    assert ledger.transition("tx2", State.COMPLETED)
    ledger.gone("tx2", archival=True, reason="provider deleted it at day 30")
    entry = ledger.get("tx2")
    assert entry is not None
    assert entry.state is State.EXPIRED
    assert ledger.counts()[State.EXPIRED] == 1
