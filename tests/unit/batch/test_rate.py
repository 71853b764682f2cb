"""A batch's call rate and ETA: over the last minute while it runs, over the whole run after.

The counters are written by the store's own Lua script (``finish.lua``, run by fakeredis with
lupa) at the times of an injected clock, and read back at other times of the same clock.
"""

from __future__ import annotations

import fakeredis
import pytest

from worker.batch import (
    BatchState,
    BatchStore,
    ItemSpec,
    ItemStatus,
    call_rate,
    encode_chunk,
    render_block,
    render_line,
)
from worker.keys import RedisKeys
from worker.settings import load_settings

T0 = 1_700_000_000.25
SPEC = ItemSpec(source="a.jpg", doc_type="01000000")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> BatchStore:
    settings = load_settings()
    keys = RedisKeys(settings.redis.namespace)
    return BatchStore(fakeredis.FakeRedis(), keys, settings.batch, clock=clock)


def _batch(store: BatchStore, rows: int) -> str:
    assert store.create("b1", {"chunk_size": rows, "manifest": "/m.csv"})
    chunk = encode_chunk([(i + 2, SPEC) for i in range(rows)])
    assert store.write_chunk("b1", 0, chunk, rows)
    store.set_meta("b1", submitted=1, total_rows=rows, total_chunks=1)
    return "b1"


def _calls(store: BatchStore, clock: Clock, first: int, count: int, every: float) -> None:
    """``count`` rows done with a provider call each, ``every`` seconds apart from now."""
    for i in range(count):
        seq = first + i
        store.finish("b1", seq, f"i{seq}", ItemStatus.DONE, token="", called=True)
        clock.now += every
    clock.now -= every  # the clock stays at the last call


def test_a_finished_batch_shows_the_rate_it_ran_at(store: BatchStore, clock: Clock) -> None:
    _batch(store, 300)
    _calls(store, clock, 0, 300, 1 / 9.9)
    store.transition("b1", "complete")
    clock.now += 600  # read ten minutes later: no decay
    progress = store.progress("b1", quota=10)
    assert progress.state is BatchState.COMPLETED
    assert progress.rate == pytest.approx(9.9, rel=1e-3)
    assert progress.eta_s is None
    assert "9.90 calls/s" in render_block(progress)


def test_a_young_batch_shows_its_current_rate_and_a_true_eta(
    store: BatchStore, clock: Clock
) -> None:
    _batch(store, 300)  # 30 s of work at 10/s
    _calls(store, clock, 0, 50, 0.1)
    progress = store.progress("b1", quota=10)
    assert progress.rate == pytest.approx(10.0, rel=1e-3)
    assert progress.eta_observed_s == pytest.approx(25.0, rel=1e-3)
    assert "ETA 25s" in render_line(progress)


def test_the_running_rate_is_the_last_minute(store: BatchStore, clock: Clock) -> None:
    _batch(store, 2000)
    _calls(store, clock, 0, 600, 0.1)  # one minute at 10/s
    _calls(store, clock, 600, 120, 1.0)  # then two minutes at 1/s
    progress = store.progress("b1", quota=10)
    assert progress.rate == pytest.approx(1.0, rel=0.05)
    assert progress.eta_observed_s == pytest.approx((2000 - 720) / progress.rate)
    clock.now += 30  # calls stopped half a minute ago
    assert store.progress("b1").rate == pytest.approx(0.5, rel=0.1)
    clock.now += 31  # and over a minute ago
    assert store.progress("b1").rate == 0.0
    assert store.progress("b1").eta_observed_s is None


def test_the_whole_run_rate_after_a_pause(store: BatchStore, clock: Clock) -> None:
    _batch(store, 100)
    _calls(store, clock, 0, 21, 0.5)  # 20 intervals over 10 s
    store.transition("b1", "pause", reason="r", by="me")
    clock.now += 3600
    assert store.progress("b1").rate == pytest.approx(2.0)


def test_rows_without_a_call_do_not_count(store: BatchStore, clock: Clock) -> None:
    _batch(store, 10)
    store.finish("b1", 0, "i0", ItemStatus.INVALID, token="", detail={"reason": "r"})
    clock.now += 1
    store.finish("b1", 1, "i1", ItemStatus.DONE, token="", called=True)
    assert store.progress("b1").rate == 0.0  # one call: no interval to measure yet


def test_call_rate_of_decoded_counters() -> None:
    n = {"calls": "11", "first_at": "100.0", "last_at": "110.0", "w:40": "100:1"}
    assert call_rate(n, running=False, now=500.0) == pytest.approx(1.0)
    assert call_rate({}, running=True, now=500.0) == 0.0
    # A slot left from an earlier lap of the ring is outside the window.
    stale = {"calls": "3", "first_at": "100.0", "last_at": "101.0", "w:40": "100:3"}
    assert call_rate(stale, running=True, now=500.0) == 0.0
