"""The batch store's Lua scripts on a real Redis: statuses, counters, claims, leases, requeue."""

from __future__ import annotations

import json

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.servers import wait_until
from worker.batch import (
    KEEP_CLAIM,
    TERMINAL,
    BatchNotFound,
    BatchState,
    BatchStore,
    ItemSpec,
    ItemStatus,
    StoredRow,
    encode_chunk,
)
from worker.keys import RedisKeys
from worker.settings import BatchSettings, load_settings

SPEC = ItemSpec(source="a.jpg", doc_type="01000000")


def _parts(**flat: object) -> tuple[RedisKeys, BatchSettings]:
    """The key schema and batch settings ``BatchStore`` takes, from flat settings fields."""
    settings = load_settings(**flat)
    return RedisKeys(settings.redis.namespace), settings.batch


@pytest.fixture
def store(redis_client: redis.Redis) -> BatchStore:
    return BatchStore(redis_client, *_parts(batch_ttl_s=7200))


def _new(store: BatchStore, batch: str = "b1", chunks: int = 3, size: int = 4) -> str:
    assert store.create(batch, {"chunk_size": size, "manifest": "/m.csv"})
    for c in range(chunks):
        rows: list[tuple[int, ItemSpec | None]] = [(c * size + i + 2, SPEC) for i in range(size)]
        assert store.write_chunk(batch, c, encode_chunk(rows), size)
    store.set_meta(batch, submitted=1, total_rows=chunks * size, total_chunks=chunks)
    return batch


def _row(seq: int) -> StoredRow:
    return StoredRow(seq, seq + 2, SPEC)


def test_create_is_once_and_keys_expire(store: BatchStore, redis_client: redis.Redis) -> None:
    batch = _new(store)
    assert not store.create(batch, {"chunk_size": 9})
    assert store.meta(batch)["chunk_size"] == "4"
    assert 0 < redis_client.ttl(store.keys(batch).meta) <= 7200
    assert 0 < redis_client.ttl(store.keys(batch).chunks) <= 7200
    assert 0 < redis_client.ttl(store.index_key) <= 7200
    # Keys first written while processing get the TTL as they are created.
    store.begin(batch, _row(0), "a")
    store.claim(batch, 0, "a", "t")
    store.finish(batch, 1, "b", ItemStatus.INVALID, token="", detail={"reason": "r"})
    for key in (store.keys(batch).owner, store.keys(batch).inflight, store.keys(batch).detail):
        assert 0 < redis_client.ttl(key) <= 7200
    with pytest.raises(BatchNotFound):
        store.meta("nope")


def test_write_chunk_is_idempotent(store: BatchStore) -> None:
    assert store.create("b2", {"chunk_size": 2})
    rows: list[tuple[int, ItemSpec | None]] = [(2, SPEC), (3, None)]
    invalid = [(1, json.dumps({"row": 2, "reason": "bad"}))]
    assert store.write_chunk("b2", 0, encode_chunk(rows), 2, invalid)
    assert not store.write_chunk("b2", 0, encode_chunk(rows), 2, invalid)
    progress = store.progress("b2")
    assert progress.total == 2  # still submitting: counts what was stored
    assert progress.counts[ItemStatus.INVALID] == 1
    assert store.read_chunk("b2", 0, 2)[1].spec is None


def test_begin_verdicts(store: BatchStore) -> None:
    batch = _new(store)
    assert store.begin(batch, _row(0), "item-a").verdict == "go"
    assert store.begin(batch, _row(0), "item-a").verdict == "go"  # same row again
    dup = store.begin(batch, _row(5), "item-a")
    assert (dup.verdict, dup.extra) == ("dup", "0:1")
    assert store.statuses(batch, 5, 1) == [ItemStatus.DUPLICATE]
    assert store.details(batch, [5])[5]["reason"] == "same item as row 1"
    assert store.begin(batch, _row(5), "item-a").verdict == "skip"
    assert store.claim(batch, 0, "item-a", "tok1") == "ok"
    claimed = store.begin(batch, _row(0), "item-a")
    assert claimed.verdict == "claimed"
    assert claimed.extra.startswith("tok1|")
    store.transition(batch, "pause")
    assert store.begin(batch, _row(1), "item-b").verdict == "stop"


def test_claims_are_exclusive_and_respect_state(store: BatchStore) -> None:
    batch = _new(store)
    assert store.claim(batch, 0, "a", "t1") == "ok"
    assert store.claim(batch, 0, "a", "t1") == "ok"  # a retry of the same attempt
    assert store.claim(batch, 0, "a", "t2") == "claimed"
    assert store.finish(batch, 0, "a", ItemStatus.DONE, token="t1", sub_code="200", called=True)
    assert store.claims(batch) == {}
    assert store.claim(batch, 0, "a", "t3") == "status:d"
    store.transition(batch, "cancel")
    assert store.claim(batch, 1, "b", "t4") == "state:cancelled"


def test_finish_keeps_or_drops_claims(store: BatchStore) -> None:
    batch = _new(store)
    store.claim(batch, 0, "a", "t1")
    store.finish(batch, 0, "a", ItemStatus.UNCERTAIN, token=KEEP_CLAIM, detail={"reason": "?"})
    assert "a" in store.claims(batch)
    store.finish(batch, 0, "a", ItemStatus.PENDING, token="other")
    assert "a" in store.claims(batch)  # someone else's claim is never dropped
    store.finish(batch, 0, "a", ItemStatus.DONE, token="")
    assert store.claims(batch) == {}
    assert store.details(batch, [0]) == {}


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.integers(0, 11), st.sampled_from([ItemStatus.PENDING, *TERMINAL])),
        max_size=60,
    )
)
def test_counters_always_match_the_statuses(
    store: BatchStore, ops: list[tuple[int, ItemStatus]]
) -> None:
    store.redis.flushdb()
    batch = _new(store)
    for seq, status in ops:
        store.finish(batch, seq, f"i{seq}", status, token="", sub_code="200")
    statuses = store.statuses(batch, 0, 12)
    progress = store.progress(batch)
    for status in TERMINAL:
        assert progress.counts[status] == statuses.count(status)
    assert progress.remaining == statuses.count(ItemStatus.PENDING)
    # Sub codes count rows that became done (each transition into done once).
    assert progress.sub_codes.get("200", 0) >= statuses.count(ItemStatus.DONE)


def test_chunk_leases_and_requeue(store: BatchStore) -> None:
    batch = _new(store, chunks=4)
    # All four were queued at submission: nothing is left behind.
    assert store.requeue_candidates(batch) == []
    assert store.acquire_chunk(batch, 0, "w1", 30) == 1
    assert store.acquire_chunk(batch, 0, "w2", 30) == 0
    assert store.acquire_chunk(batch, 1, "w2", 0.2) == 1
    # Chunk 0 and 1 are leased (no longer queued); 2 and 3 still queued.
    assert store.requeue_candidates(batch) == []
    assert store.release_chunk(batch, 0, "w1", "done") == (1, 4, "running")
    assert store.acquire_chunk(batch, 0, "w3", 30) == -1
    # The worker on chunk 1 dies: once its lease expires, the chunk is handed out again.
    wait_until(lambda: store.requeue_candidates(batch) == [1], timeout=5)
    assert store.requeue_candidates(batch) == []  # now marked queued
    assert store.requeue_candidates(batch, force=True) == [1, 2, 3]
    store.release_chunk(batch, 2, "nobody", "stop")
    store.unmark_queued(batch, [3])
    assert store.requeue_candidates(batch) == [3]


def test_reset_returns_chunks_and_drops_uncertain_claims(store: BatchStore) -> None:
    batch = _new(store, chunks=3, size=4)
    store.finish(batch, 1, "a", ItemStatus.FAILED, token="", detail={"reason": "x"})
    store.claim(batch, 9, "b", "t9")
    store.finish(batch, 9, "b", ItemStatus.UNCERTAIN, token=KEEP_CLAIM, detail={"reason": "y"})
    for c in range(3):
        store.acquire_chunk(batch, c, "w", 30)
        store.release_chunk(batch, c, "w", "done")
    assert store.reset(batch, [ItemStatus.FAILED]) == (1, [0])
    assert store.statuses(batch, 1, 1) == [ItemStatus.PENDING]
    assert "b" in store.claims(batch)
    assert store.reset(batch, [ItemStatus.FAILED, ItemStatus.UNCERTAIN]) == (1, [2])
    assert store.claims(batch) == {}
    assert store.progress(batch).chunks_done == 1


def test_transitions(store: BatchStore) -> None:
    batch = _new(store)
    assert store.transition(batch, "resume") == (False, "running")
    assert store.transition(batch, "pause", reason="why", by="me") == (True, "paused")
    assert store.progress(batch).pause_reason == "why"
    assert store.transition(batch, "complete") == (False, "paused")
    assert store.transition(batch, "resume") == (True, "running")
    assert store.progress(batch).pause_reason is None
    assert store.transition(batch, "complete") == (True, "completed")
    assert store.transition(batch, "reopen") == (True, "running")
    assert store.transition(batch, "cancel") == (True, "cancelled")
    assert store.transition(batch, "resume") == (False, "cancelled")
    assert store.state(batch) is BatchState.CANCELLED
    assert store.transition("missing", "pause") == (False, "missing")


def test_rate_is_the_last_minute_then_the_whole_run(redis_client: redis.Redis) -> None:
    now = [1_700_000_000.5]
    store = BatchStore(redis_client, *_parts(batch_ttl_s=7200), clock=lambda: now[0])
    batch = _new(store, "rate")
    for seq in range(6):
        store.finish(batch, seq, f"i{seq}", ItemStatus.DONE, token="", called=True)
        now[0] += 0.25
    now[0] -= 0.25
    assert store.progress(batch, quota=10).rate == pytest.approx(4.0)
    now[0] += 61  # running, no call for over a minute
    assert store.progress(batch, quota=10).rate == 0.0
    store.transition(batch, "complete")
    assert store.progress(batch, quota=10).rate == pytest.approx(4.0)


def test_list_drops_expired_batches(store: BatchStore) -> None:
    _new(store, "old")
    _new(store, "new")
    assert store.list_ids() == ["new", "old"]
    store.redis.delete(store.keys("old").meta)
    assert store.list_ids() == ["new"]
    assert store.redis.zrange(store.index_key, 0, -1) == [b"new"]
