"""The ledger's transition rules on a real Redis, where the mutation tier found them untested:
a move allowed only from given states, a transaction that is not there, the indexes a move
leaves, the reason kept, and counts that follow every move exactly."""

from __future__ import annotations

import pytest
import redis

from tests.integration.ledger.test_ledger import Clock, make_ledger
from worker.ledger import Ledger, State
from worker.settings import load_settings

TX = "hk0123456789abcdef0123456789ab01"
TX2 = "hk0123456789abcdef0123456789ab02"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(redis_client: redis.Redis, redis_url: str, clock: Clock) -> Ledger:
    settings = load_settings(redis_url=redis_url, reconcile_after_s=120)
    return make_ledger(redis_client, settings, clock)


def test_a_move_allowed_only_from_some_states(ledger: Ledger) -> None:
    assert ledger.record_start(TX, "eKYC", "biz1")
    for allowed in ((State.COMPLETED,), (State.COMPLETED, State.RESULT_STORED)):
        assert not ledger.transition(TX, State.RESULT_STORED, allowed_from=allowed)
        entry = ledger.get(TX)
        assert entry is not None
        assert entry.state is State.INITIALIZED
    # the current state must be one of those listed
    assert not ledger.transition(TX, State.COMPLETED, allowed_from=(State.EVIDENCE_STORED,))
    assert ledger.transition(
        TX, State.COMPLETED, allowed_from=(State.RESULT_STORED, State.INITIALIZED)
    )
    entry = ledger.get(TX)
    assert entry is not None
    assert entry.state is State.COMPLETED
    # the current state first in the list, and alone
    assert ledger.transition(TX, State.RESULT_STORED, allowed_from=(State.COMPLETED, State.EXPIRED))
    assert ledger.transition(TX, State.EVIDENCE_STORED, allowed_from=(State.RESULT_STORED,))


def test_a_transaction_that_is_not_there_is_not_created_by_a_move(
    ledger: Ledger, redis_client: redis.Redis
) -> None:
    assert not ledger.transition(TX, State.COMPLETED, queue="rt", due=1.0)
    assert ledger.get(TX) is None
    assert ledger.counts()[State.COMPLETED] == 0
    assert ledger.queued("rt") == 0


def test_a_move_keeps_its_reason_and_the_entry_one_index(ledger: Ledger, clock: Clock) -> None:
    assert ledger.record_start(TX, "eKYC", "biz1")
    assert ledger.queued("rt") == 1
    assert ledger.transition(TX, State.RESULT_STORED, queue="ar", due=clock.now + 5, reason="r1")
    entry = ledger.get(TX)
    assert entry is not None
    assert (entry.queue, entry.due_at, entry.reason) == ("ar", clock.now + 5, "r1")
    assert (ledger.queued("rt"), ledger.queued("ar")) == (0, 1)
    assert ledger.transition(TX, State.ARCHIVED)
    entry = ledger.get(TX)
    assert entry is not None
    assert (entry.state, entry.queue, entry.due_at, entry.reason) == (
        State.ARCHIVED,
        None,
        None,
        "r1",
    )
    assert (ledger.queued("rt"), ledger.queued("ar")) == (0, 0)
    assert ledger.deleting_between(0, float("inf")) == 0


def test_counts_follow_every_move(ledger: Ledger) -> None:
    assert ledger.record_start(TX, "eKYC", "biz1")
    assert ledger.record_start(TX2, "eKYC", "biz2")
    assert ledger.transition(TX, State.COMPLETED)
    counts = ledger.counts()
    assert (counts[State.INITIALIZED], counts[State.COMPLETED]) == (1, 1)
    assert ledger.transition(TX2, State.COMPLETED)
    assert ledger.transition(TX2, State.ABANDONED)
    counts = ledger.counts()
    assert (counts[State.INITIALIZED], counts[State.COMPLETED], counts[State.ABANDONED]) == (
        0,
        1,
        1,
    )


def test_a_callback_for_a_transaction_never_started_records_it_whole(
    ledger: Ledger, redis_client: redis.Redis, clock: Clock
) -> None:
    verdict = ledger.on_callback(TX, "eKYC_PRO", "biz7", now=clock.now - 10)
    assert (verdict.status, verdict.product_code, verdict.merchant_biz_id) == (
        "accepted",
        "eKYC_PRO",
        "biz7",
    )
    # A callback is not the provider's word on when the flow completed: no completion time yet.
    assert verdict.completed_at is None
    entry = ledger.get(TX)
    assert entry is not None
    assert (entry.state, entry.product_code, entry.merchant_biz_id, entry.source) == (
        State.COMPLETED,
        "eKYC_PRO",
        "biz7",
        "callback",
    )
    assert (entry.created_at, entry.completed_at, entry.attempts) == (clock.now - 10, None, 0)
    assert entry.queue == "rt"
    assert ledger.queued("rt") == 1
    assert ledger.deleting_between(entry.deletes_at - 1, entry.deletes_at + 1) == 1
    assert redis_client.pttl(ledger.key(TX)) > 0
    assert ledger.counts()[State.COMPLETED] == 1


def test_a_claim_takes_only_what_is_due_in_the_index_swept(
    ledger: Ledger, redis_client: redis.Redis, clock: Clock
) -> None:
    assert ledger.record_start(TX, "eKYC", "biz1")
    due = clock.now + 120
    assert ledger.claim(TX, "rt", hold_until=due + 600, now=due - 1) == "not_due"
    assert ledger.claim(TX, "ar", hold_until=due + 600, now=due) == "not_due"
    assert ledger.take_lock("reconcile", 60) is not None  # a sweep holds the lock ...
    claim = ledger.claim(TX, "rt", hold_until=due + 600, now=due)  # ... no fence: not checked
    assert not isinstance(claim, str)
    assert (claim.state, claim.product_code, claim.merchant_biz_id, claim.attempts) == (
        State.INITIALIZED,
        "eKYC",
        "biz1",
        1,
    )
    assert claim.completed_at is None
    # The attempt holds the transaction until hold_until, in the same index, once.
    assert redis_client.zscore(ledger.index_key("rt"), TX) == due + 600
    assert redis_client.zcard(ledger.index_key("rt")) == 1
    assert ledger.claim(TX, "rt", hold_until=due + 1200, now=due + 1) == "not_due"


def test_a_claim_of_completed_work_carries_its_completion_time(
    ledger: Ledger, clock: Clock
) -> None:
    ledger.on_callback(TX, "eKYC", "biz1", now=clock.now)
    due = clock.now + 120
    claim = ledger.claim(TX, "rt", hold_until=due + 600, now=due)
    assert not isinstance(claim, str)
    assert (claim.state, claim.completed_at) == (State.COMPLETED, None)  # no worker saw it yet
    ledger.saw_completed(TX, at=clock.now + 5)
    claim = ledger.claim(TX, "rt", hold_until=due + 1200, now=due + 600)
    assert not isinstance(claim, str)
    assert (claim.state, claim.completed_at) == (State.COMPLETED, clock.now + 5)


def test_a_claim_cleans_the_indexes_of_what_is_gone_or_final(
    ledger: Ledger, redis_client: redis.Redis, clock: Clock
) -> None:
    assert ledger.record_start(TX, "eKYC", "biz1")
    redis_client.zadd(ledger.index_key("ar"), {TX: 1.0})
    redis_client.delete(ledger.key(TX))  # the record expired; its index entries did not
    assert ledger.claim(TX, "rt", hold_until=clock.now + 600, now=clock.now + 500) == "missing"
    for key in (ledger.index_key("rt"), ledger.index_key("ar"), ledger.deletes_key):
        assert redis_client.zscore(key, TX) is None, key
    assert ledger.record_start(TX2, "eKYC", "biz2")
    assert ledger.transition(TX2, State.ABANDONED)
    redis_client.zadd(ledger.index_key("rt"), {TX2: 1.0})  # a stale index entry
    redis_client.zadd(ledger.index_key("ar"), {TX2: 1.0})
    assert ledger.claim(TX2, "rt", hold_until=clock.now + 600, now=clock.now) == "final"
    for key in (ledger.index_key("rt"), ledger.index_key("ar")):
        assert redis_client.zscore(key, TX2) is None, key


def test_a_callback_for_started_or_overdue_work(ledger: Ledger, clock: Clock) -> None:
    assert ledger.record_start(TX, "eKYC", "biz1")
    at = clock.now + 30
    first = ledger.on_callback(TX, "other", "other", now=at)
    assert (first.status, first.product_code, first.merchant_biz_id, first.completed_at) == (
        "accepted",
        "eKYC",
        "biz1",
        None,
    )
    entry = ledger.get(TX)
    assert entry is not None
    assert (entry.state, entry.completed_at, entry.queue, entry.due_at) == (
        State.COMPLETED,
        None,
        "rt",
        at + 120,
    )
    assert ledger.deleting_between(entry.deletes_at - 1, entry.deletes_at + 1) == 1
    assert entry.deletes_at > at
    # Before its work is due, a repeat is a duplicate that still says when it completed.
    repeat = ledger.on_callback(TX, "eKYC", "biz1", now=at + 119)
    assert (repeat.status, repeat.completed_at) == ("duplicate", None)
    # From the due time on, the earlier message is taken as lost: accepted, due again later.
    again = ledger.on_callback(TX, "eKYC", "biz1", now=at + 120)
    assert (again.status, again.completed_at) == ("accepted", None)
    entry = ledger.get(TX)
    assert entry is not None
    assert entry.due_at == at + 240
