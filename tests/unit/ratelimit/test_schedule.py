"""Invariants of the limiter's schedule, checked on its Lua scripts in controlled time.

fakeredis (with Lua) keeps these fast; tests/integration/test_ratelimit.py runs every script
on a real Redis too.
"""

from __future__ import annotations

import itertools
import random

import fakeredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.ratelimit.sim import (
    API,
    PRODUCT,
    Caller,
    FakeClock,
    Sim,
    limiter_for,
    max_in_window,
    tolerance,
)
from worker.ratelimit import (
    EARLY_S,
    AdaptivePolicy,
    CallContext,
    DeadlineUnreachable,
    Lane,
    MarginPolicy,
    MaxWaitExceeded,
    RedisRateLimiter,
)
from worker.settings import Settings, load_settings

# No slow start: these tests check the schedule at the configured rate from the first call.
STEADY = AdaptivePolicy(restart=1.0)
FAST = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


def make_limiter(
    quota: float = 10, margin: float = 0.01, burst: int = 1, **kwargs: object
) -> tuple[RedisRateLimiter, FakeClock, fakeredis.FakeRedis]:
    clock = FakeClock()
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    conf: Settings = load_settings(
        quotas={PRODUCT: quota}, quota_safety_margin=margin, quota_burst=burst
    )
    kwargs.setdefault("policy", STEADY)
    kwargs.setdefault("margin", MarginPolicy.fixed(margin))  # the schedule, not the learning
    limiter = limiter_for(client, conf, clock=clock, sleep=clock.sleep, **kwargs)
    return limiter, clock, client


def snapshot(client: fakeredis.FakeRedis, limiter: RedisRateLimiter) -> tuple[object, ...]:
    keys = limiter.keys(PRODUCT, API)
    return (
        client.hget(keys.state, "tat"),
        client.zrange(keys.waiters, 0, -1, withscores=True),
        client.zrange(keys.expiry, 0, -1, withscores=True),
    )


@FAST
@given(
    quota=st.sampled_from([5, 10, 20, 50]),
    margin=st.sampled_from([0.005, 0.01, 0.05]),
    workers=st.integers(1, 5),
    gaps=st.lists(st.floats(2.0, 8.0), min_size=1, max_size=6),
    seed=st.integers(0, 2**16),
    wild=st.booleans(),
)
def test_quota_edf_realtime_delay_and_utilisation(
    quota: int, margin: float, workers: int, gaps: list[float], seed: int, wild: bool
) -> None:
    """A bulk backlog plus sparse realtime callers, with random wake-up lateness.

    Always: no 1-second window holds more than the quota, and nobody is granted while a
    caller with an earlier deadline waits. With lateness within the tolerance: realtime
    waits at most one slot interval plus its own lateness, and every slot is used.
    """
    limiter, clock, _ = make_limiter(quota, margin)
    interval = 1 / (quota * (1 - margin))
    tol = tolerance(quota, margin, interval)
    rng = random.Random(seed)
    # Wild lateness exceeds the tolerance (the schedule slips) but stays within the grace.
    spread = 1.5 * interval if wild else tol
    sim = Sim(limiter, clock)
    start = clock.t
    sim.bulk_workers(workers, start, lambda: rng.uniform(0, spread))
    realtime: list[Caller] = []
    at = start + 0.2
    for i, gap in enumerate(gaps):
        at += gap * interval
        caller = Caller(f"rt-{i}", Lane.REALTIME, at, lateness=lambda: rng.uniform(0, spread))
        realtime.append(caller)
        sim.add(caller)
    duration = max(2.0, at - start + 0.5)
    sim.run(start + duration)

    times = [t for t, _ in sim.grants]
    assert max_in_window(times) <= quota
    assert not sim.edf_violations
    assert all(c.granted_at is not None for c in realtime)
    if not wild:
        for c in realtime:
            assert c.granted_at is not None
            assert c.granted_at - c.arrival <= interval + sum(c.wakeups) + 1e-5
        assert len(times) >= duration / interval - 1


@FAST
@given(ahead=st.integers(0, 6), lane=st.sampled_from(list(Lane)), share=st.floats(0.01, 0.99))
def test_deadline_unreachable_is_immediate_and_reserves_nothing(
    ahead: int, lane: Lane, share: float
) -> None:
    limiter, clock, client = make_limiter(quota=10)
    interval = 1 / (10 * 0.99)
    first = limiter.reserve(PRODUCT, API, CallContext(Lane.BULK))
    assert first.granted
    waiters_deadline = clock.t + ahead * interval + 0.05
    for _ in range(ahead):
        res = limiter.reserve(PRODUCT, API, CallContext(Lane.REALTIME, waiters_deadline))
        assert not res.granted
    before = snapshot(client, limiter)
    tat = float(before[0])  # type: ignore[arg-type]
    earliest = tat + ahead * interval  # this caller's turn: after every earlier deadline
    deadline = waiters_deadline + share * (earliest - waiters_deadline)
    slept: list[float] = []
    refusing = RedisRateLimiter(
        client,
        limiter.quotas,
        namespace=limiter.namespace,
        clock=clock,
        sleep=slept.append,
        max_wait=3600,
        policy=STEADY,
    )
    with pytest.raises(DeadlineUnreachable) as info:
        refusing.acquire(PRODUCT, API, CallContext(lane, deadline))
    assert not isinstance(info.value, MaxWaitExceeded)
    assert not slept
    assert info.value.deadline == pytest.approx(deadline, abs=1e-6)
    assert info.value.earliest == pytest.approx(earliest, abs=1e-5)
    assert snapshot(client, limiter) == before


def test_max_wait_bounds_the_wait_and_reserves_nothing() -> None:
    limiter, clock, client = make_limiter(quota=10)
    for _ in range(8):
        limiter.reserve(PRODUCT, API, CallContext(Lane.REALTIME, clock.t + 10))
    before = snapshot(client, limiter)
    bounded = RedisRateLimiter(
        client,
        limiter.quotas,
        namespace=limiter.namespace,
        clock=clock,
        sleep=clock.sleep,
        max_wait=0.5,
        policy=STEADY,
    )
    with pytest.raises(MaxWaitExceeded) as info:
        bounded.acquire(PRODUCT, API, CallContext(Lane.BULK))
    assert isinstance(info.value, DeadlineUnreachable)
    assert info.value.deadline == pytest.approx(clock.t + 0.5, abs=1e-6)
    assert info.value.earliest > info.value.deadline
    assert snapshot(client, limiter) == before


@FAST
@given(dead=st.integers(1, 6), quota=st.sampled_from([5, 20, 50]))
def test_expired_waiters_do_not_block(dead: int, quota: int) -> None:
    limiter, clock, client = make_limiter(quota=quota)
    limiter.reserve(PRODUCT, API, CallContext(Lane.BULK))  # takes the free slot
    last_expiry = 0.0
    for _ in range(dead):  # told when to come back, never do
        res = limiter.reserve(PRODUCT, API, CallContext(Lane.REALTIME))
        assert not res.granted
        last_expiry = max(last_expiry, res.slot_start + max(0.1, 2 * res.interval))
    sim = Sim(limiter, clock)
    survivor = Caller("bulk", Lane.BULK, clock.t)
    sim.add(survivor)
    sim.run(clock.t + 10)
    assert survivor.granted_at is not None
    interval = 1 / (quota * 0.99)
    assert survivor.granted_at <= last_expiry + interval + 1e-5
    # It asked again at most about twice per slot interval while the dead ones held the queue.
    assert survivor.calls <= (survivor.granted_at - survivor.arrival) / (interval / 2) + 2
    assert client.zcard(limiter.keys(PRODUCT, API).waiters) == 0


def test_lanes_are_served_earliest_deadline_first() -> None:
    limiter, clock, _ = make_limiter(quota=10)
    sim = Sim(limiter, clock)
    order: list[str] = []
    sim.on_grant = lambda caller, now: order.append(caller.name)
    t = clock.t
    sim.add(Caller("bulk-a", Lane.BULK, t))
    sim.add(Caller("bulk-b", Lane.BULK, t + 0.001))
    sim.add(Caller("bulk-c", Lane.BULK, t + 0.002))
    sim.add(Caller("archival", Lane.ARCHIVAL, t + 0.003))
    sim.add(Caller("realtime", Lane.REALTIME, t + 0.004))
    sim.add(Caller("urgent-bulk", Lane.BULK, t + 0.005, deadline=t + 5))
    sim.run(t + 5)
    assert order == ["bulk-a", "urgent-bulk", "realtime", "archival", "bulk-b", "bulk-c"]


def test_lane_default_deadlines() -> None:
    limiter, clock, _ = make_limiter()
    horizons = {Lane.REALTIME: 1800.0, Lane.ARCHIVAL: 86400.0, Lane.BULK: 604800.0}
    for lane, horizon in horizons.items():
        res = limiter.reserve(PRODUCT, API, CallContext(lane))
        assert res.deadline - res.now == pytest.approx(horizon, abs=1e-5)
    explicit = limiter.reserve(PRODUCT, API, CallContext(Lane.BULK, clock.t + 42))
    assert explicit.deadline == pytest.approx(clock.t + 42, abs=1e-6)


def test_burst_allows_that_many_at_once() -> None:
    limiter, _, _ = make_limiter(quota=10, burst=3)
    answers = [limiter.reserve(PRODUCT, API, CallContext(Lane.BULK)) for _ in range(4)]
    assert [a.granted for a in answers] == [True, True, True, False]


def test_wait_for_slot_sleeps_exactly_until_its_turn() -> None:
    limiter, clock, _ = make_limiter(quota=10)
    grants, returned = [], []
    for _ in range(5):
        grants.append(limiter.wait_for_slot(PRODUCT, API, CallContext(Lane.BULK)))
        returned.append(clock())
    gaps = [b.slot_start - a.slot_start for a, b in itertools.pairwise(grants)]
    assert gaps == pytest.approx([grants[0].interval] * 4, abs=1e-5)
    # It wakes a little early, claims its slot, and returns when the slot starts.
    assert returned == pytest.approx([g.slot_start for g in grants], abs=1e-5)
    assert [g.now < g.slot_start for g in grants] == [False, True, True, True, True]
    assert all(g.slot_start - g.now <= EARLY_S + 1e-5 for g in grants)


def test_interrupted_wait_leaves_the_queue() -> None:
    limiter, clock, client = make_limiter(quota=10)
    limiter.reserve(PRODUCT, API, CallContext(Lane.BULK))

    class Interrupted(Exception):
        pass

    def interrupt(seconds: float) -> None:
        raise Interrupted

    impatient = RedisRateLimiter(
        client,
        limiter.quotas,
        namespace=limiter.namespace,
        clock=clock,
        sleep=interrupt,
        policy=STEADY,
    )
    with pytest.raises(Interrupted):
        impatient.acquire(PRODUCT, API, CallContext(Lane.REALTIME))
    keys = limiter.keys(PRODUCT, API)
    assert client.zcard(keys.waiters) == 0
    assert client.zcard(keys.expiry) == 0


def test_slow_start_after_a_pause() -> None:
    """A bucket idle for a second restarts below its rate and ramps back up linearly."""
    policy = AdaptivePolicy(restart=0.8, recovery_per_s=0.1)
    limiter, clock, _ = make_limiter(quota=10, policy=policy)
    first = limiter.wait_for_slot(PRODUCT, API, CallContext(Lane.BULK))
    assert first.factor == pytest.approx(0.8)
    clock.t += 1.0
    assert limiter.wait_for_slot(PRODUCT, API, CallContext(Lane.BULK)).factor == pytest.approx(
        0.9, abs=1e-5
    )
    clock.t += 1.0
    steady = limiter.wait_for_slot(PRODUCT, API, CallContext(Lane.BULK))
    assert steady.factor == 1.0
    clock.t += 0.9  # a short pause is not a restart
    assert limiter.wait_for_slot(PRODUCT, API, CallContext(Lane.BULK)).factor == 1.0
    clock.t += 1.5
    again = limiter.wait_for_slot(PRODUCT, API, CallContext(Lane.BULK))
    assert again.factor == pytest.approx(0.8)
    follow = limiter.wait_for_slot(PRODUCT, API, CallContext(Lane.BULK))
    assert follow.slot_start - again.slot_start == pytest.approx(again.interval, rel=1e-3)
    assert again.interval == pytest.approx(1 / (10 * 0.99 * 0.8), rel=1e-4)
