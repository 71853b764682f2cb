"""The desired-workers arithmetic: deadlines ask for workers, the quota caps them."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.observability.demand import LaneLoad, Reading, ServiceTime, desired


def _load(**kw: object) -> LaneLoad:
    base: dict[str, object] = dict(
        lane="bulk", backlog=0, in_flight=0, seconds_per_item=0.5, drain_s=300.0, quota=10.0
    )
    return LaneLoad(**{**base, **kw})  # type: ignore[arg-type]


def test_no_work_wants_no_worker() -> None:
    assert desired(_load()).workers == 0


def test_one_item_wants_one_worker() -> None:
    assert desired(_load(backlog=1)).processes == 1
    assert desired(_load(in_flight=1)).processes == 1


def test_the_deadline_asks_for_workers_until_the_quota_caps_them() -> None:
    # 600 items of 0.5 s in 300 s: 1 process; 6,000: 10; the quota (10/s x 0.5 s) keeps 5 busy.
    assert desired(_load(backlog=600)).processes == 1
    assert desired(_load(backlog=1200)).processes == 2
    capped = desired(_load(backlog=6000))
    assert (capped.needed, capped.useful, capped.processes) == (10, 5, 5)


def test_a_lane_without_provider_calls_is_not_capped() -> None:
    demand = desired(_load(backlog=6000, quota=None))
    assert demand.useful is None
    assert demand.processes == 10


def test_pods_round_up_by_concurrency() -> None:
    assert desired(_load(backlog=6000, quota=None, concurrency=4)).workers == 3
    assert desired(_load(backlog=4800, quota=None, concurrency=4)).workers == 2


def test_no_quota_left_wants_no_worker() -> None:
    assert desired(_load(backlog=100, quota=0.0)).workers == 0


def test_rounding_noise_does_not_add_a_process() -> None:
    # 0.1 * 30 = 3.0000000000000004 in floats
    assert desired(_load(backlog=1000, quota=0.1, seconds_per_item=30.0)).useful == 3


@pytest.mark.parametrize(
    "bad",
    [
        {"backlog": -1},
        {"seconds_per_item": 0.0},
        {"drain_s": 0.0},
        {"quota": -1.0},
        {"concurrency": 0},
        {"calls_per_item": 0.0},
    ],
)
def test_impossible_loads_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must be"):
        _load(**bad)


loads = st.builds(
    LaneLoad,
    lane=st.just("bulk"),
    backlog=st.integers(0, 10**7),
    in_flight=st.integers(0, 1000),
    seconds_per_item=st.floats(0.001, 600),
    drain_s=st.floats(1, 86400 * 30),
    quota=st.one_of(st.none(), st.floats(0, 10_000)),
    concurrency=st.integers(1, 64),
    calls_per_item=st.floats(0.1, 10),
)


@given(loads)
def test_never_more_than_the_quota_keeps_busy(load: LaneLoad) -> None:
    demand = desired(load)
    if load.quota is not None:
        assert demand.useful is not None
        assert demand.processes <= max(1, demand.useful)
        assert demand.workers <= math.ceil(max(1, demand.useful) / load.concurrency)


@given(loads)
def test_uncapped_workers_meet_the_deadline(load: LaneLoad) -> None:
    demand = desired(load)
    work = load.backlog + load.in_flight
    if work and (demand.useful is None or demand.needed <= demand.useful):
        # processes x drain_s seconds of service cover the work
        assert demand.processes * load.drain_s >= work * load.seconds_per_item * (1 - 1e-9)
        assert demand.workers * load.concurrency >= demand.processes


@given(loads, st.integers(0, 10**6))
def test_more_backlog_never_wants_fewer_workers(load: LaneLoad, more: int) -> None:
    bigger = LaneLoad(**{**_fields(load), "backlog": load.backlog + more})
    assert desired(bigger).workers >= desired(load).workers


@given(loads, st.floats(1.0, 100.0))
def test_a_later_deadline_never_wants_more_workers(load: LaneLoad, factor: float) -> None:
    later = LaneLoad(**{**_fields(load), "drain_s": load.drain_s * factor})
    assert desired(later).workers <= desired(load).workers


def _fields(load: LaneLoad) -> dict[str, object]:
    return {name: getattr(load, name) for name in LaneLoad.__slots__}


def test_service_time_is_the_default_until_items_finish() -> None:
    est = ServiceTime(2.0)
    assert est.update(Reading(busy_s=0, items=0)) == 2.0
    assert est.update(Reading(busy_s=0, items=0)) == 2.0


def test_service_time_excludes_limiter_waits() -> None:
    est = ServiceTime(2.0)
    est.update(Reading(busy_s=10, items=10, wait_s=1, waits=10))
    # 20 items in 30 s, of which 0.4 s a call waited on the limiter: 1.5 - 0.4 = 1.1 s each
    assert est.update(Reading(busy_s=40, items=30, wait_s=9, waits=30)) == pytest.approx(1.1)


def test_service_time_is_smoothed_and_survives_a_counter_reset() -> None:
    est = ServiceTime(2.0, smoothing=0.5)
    est.update(Reading(busy_s=0, items=0))
    est.update(Reading(busy_s=10, items=10))  # 1.0 s (first sample taken whole)
    assert est.update(Reading(busy_s=40, items=20)) == pytest.approx(2.0)  # 3.0 s, halfway
    assert est.update(Reading(busy_s=1, items=1)) == pytest.approx(2.0)  # reset: kept
    assert est.update(Reading(busy_s=3, items=2)) == pytest.approx(2.0)  # 2.0 s


def test_service_time_never_drops_below_its_floor() -> None:
    est = ServiceTime(2.0, floor_s=0.05)
    est.update(Reading(busy_s=0, items=0, wait_s=0, waits=0))
    assert est.update(Reading(busy_s=1, items=10, wait_s=5, waits=10)) == 0.05


def test_rows_counted_before_their_chunk_ends_wait_for_its_seconds() -> None:
    est = ServiceTime(2.0)
    est.update(Reading(busy_s=0, items=0))
    assert est.update(Reading(busy_s=0, items=50)) == 2.0  # rows done, chunk still running
    assert est.update(Reading(busy_s=0, items=100)) == 2.0
    assert est.update(Reading(busy_s=25, items=100)) == pytest.approx(0.25)  # chunk ended
