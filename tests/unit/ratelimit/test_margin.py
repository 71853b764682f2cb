"""The learned safety margin: widened by throttles, narrowed by quiet time, floored by the
spread of the grant-to-send gap, bounded; and, in the simulator, against a provider whose
arrivals jitter."""

from __future__ import annotations

import bisect
import random
import time

import fakeredis
import pytest

from tests.unit.ratelimit.sim import API, PRODUCT, FakeClock, Sim, limiter_for
from worker.ratelimit import (
    LATENESS_SHARE,
    AdaptivePolicy,
    CallContext,
    Lane,
    MarginPolicy,
    RedisRateLimiter,
    read_status,
)
from worker.settings import load_settings

QUOTA = 10.0
INITIAL = 0.015
STEADY = AdaptivePolicy(restart=1.0)


class Gauges:
    """A ``Metrics`` keeping the last rate-factor gauge."""

    def __init__(self) -> None:
        self.rate_factor: float | None = None

    def incr(self, name: str, value: float = 1, **labels: str) -> None:
        return None

    def observe(self, name: str, value: float, **labels: str) -> None:
        return None

    def gauge(self, name: str, value: float, **labels: str) -> None:
        assert name == "idv_limiter_rate_factor"
        self.rate_factor = value


def make(
    margin: MarginPolicy | None = None, quota: float = QUOTA
) -> tuple[RedisRateLimiter, FakeClock, fakeredis.FakeRedis, Gauges]:
    clock = FakeClock()
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    conf = load_settings(quotas={PRODUCT: quota}, quota_safety_margin=INITIAL)
    gauges = Gauges()
    limiter = limiter_for(
        client, conf, clock=clock, sleep=clock.sleep, policy=STEADY, margin=margin, metrics=gauges
    )
    return limiter, clock, client, gauges


def margin_of(limiter: RedisRateLimiter) -> float:
    return limiter.reserve(PRODUCT, API, CallContext(Lane.BULK)).margin


def test_a_bucket_starts_at_the_configured_margin_and_narrows_to_the_floor() -> None:
    limiter, clock, _, _ = make()
    policy = limiter.margin
    assert margin_of(limiter) == pytest.approx(INITIAL)
    clock.t += policy.hold_s  # quiet, but not long enough yet
    assert margin_of(limiter) == pytest.approx(INITIAL)
    clock.t += policy.half_life_s
    assert margin_of(limiter) == pytest.approx(policy.floor + (INITIAL - policy.floor) / 2)
    clock.t += 20 * policy.half_life_s
    assert margin_of(limiter) == pytest.approx(policy.floor, abs=1e-6)


def test_a_throttle_widens_the_margin_and_quiet_narrows_it_above_where_it_struck() -> None:
    limiter, clock, client, gauges = make()
    policy = limiter.margin
    margin_of(limiter)
    limiter.feedback(PRODUCT, API, throttled=True)
    widened = margin_of(limiter)
    assert widened == pytest.approx(2 * INITIAL)
    assert gauges.rate_factor == pytest.approx(1 - widened)
    # The rate factor is untouched: the margin takes throttles until its ceiling.
    res = limiter.reserve(PRODUCT, API, CallContext(Lane.BULK))
    assert res.factor == 1.0
    assert res.interval == pytest.approx(1 / (QUOTA * (1 - widened)), rel=1e-5)
    # One episode throttles every request in flight: widened once per widen hold.
    limiter.feedback(PRODUCT, API, throttled=True)
    assert margin_of(limiter) == pytest.approx(widened)

    clock.t += 1000.0  # long quiet: back to just above the margin that was throttled
    target = INITIAL * policy.hit_factor + policy.hit_step
    hit_left = 0.5 ** (1000.0 / policy.hit_half_life_s)
    expected = max(policy.floor, INITIAL * hit_left * policy.hit_factor + policy.hit_step)
    assert margin_of(limiter) == pytest.approx(expected, rel=1e-4)
    assert policy.floor < expected < target
    [status] = read_status(
        client, limiter.quotas, limiter.namespace, clock=clock, margin=policy, policy=STEADY
    )
    assert status.margin == pytest.approx(expected, rel=1e-4)
    assert status.widened == 1
    assert status.throttled_total == 2
    assert status.rate_factor == pytest.approx(1 - expected, rel=1e-6)


def test_the_margin_stays_within_its_bounds_and_then_the_rate_slows() -> None:
    limiter, clock, _, _ = make()
    policy = limiter.margin
    for _ in range(10):
        limiter.feedback(PRODUCT, API, throttled=True)
        clock.t += policy.widen_hold_s
    res = limiter.reserve(PRODUCT, API, CallContext(Lane.BULK))
    assert res.margin == pytest.approx(policy.ceiling)
    assert res.factor < 1.0  # throttled at the ceiling: someone else uses the quota
    clock.t += 100 * policy.hit_half_life_s
    assert margin_of(limiter) == pytest.approx(policy.floor, abs=1e-6)


def test_a_fixed_policy_never_moves() -> None:
    limiter, clock, _, _ = make(MarginPolicy.fixed(INITIAL))
    limiter.feedback(PRODUCT, API, throttled=True)
    clock.t += 1000
    assert margin_of(limiter) == pytest.approx(INITIAL)


def test_the_gap_spread_sets_a_lower_bound() -> None:
    """Gaps reported through ``feedback(sent_at=...)``: their spread must fit in the room."""
    limiter, clock, client, _ = make()
    policy = limiter.margin
    clock.t += 100 * policy.half_life_s  # narrowed to the floor
    rng = random.Random(3)
    for _ in range(400):
        limiter.wait_for_slot(PRODUCT, API, CallContext(Lane.BULK))
        limiter.feedback(
            PRODUCT, API, throttled=False, sent_at=time.monotonic() + rng.uniform(0, 0.02)
        )
        clock.t += 0.2
    [status] = read_status(
        client, limiter.quotas, limiter.namespace, clock=clock, margin=policy, policy=STEADY
    )
    assert status.gap_dev == pytest.approx(0.005, rel=0.3)  # uniform 0..20 ms: 5 ms
    assert status.gap_mean is not None
    assert status.gap_mean >= 0.010  # plus this process's own time from grant to send
    assert status.gap_dev is not None
    bound = policy.gap_k * status.gap_dev / (1 - LATENESS_SHARE)
    assert status.margin == pytest.approx(bound, rel=1e-3)
    assert status.margin > 0.02  # 20 ms of spread need ~20 ms of room
    # A steady gap (however long) needs no room: only its spread does.
    limiter2, clock2, _, _ = make()
    clock2.t += 100 * policy.half_life_s
    for _ in range(100):
        limiter2.wait_for_slot(PRODUCT, API, CallContext(Lane.BULK))
        limiter2.feedback(PRODUCT, API, throttled=False, sent_at=time.monotonic() + 0.05)
        clock2.t += 0.2
    # (What remains is this process's own timing noise around the store's round trips.)
    assert margin_of(limiter2) < status.margin / 2


def test_feedback_without_a_grant_or_a_send_time_writes_nothing() -> None:
    limiter, _, client, _ = make()
    limiter.feedback(PRODUCT, API, throttled=False)
    limiter.feedback(PRODUCT, API, throttled=False, sent_at=time.monotonic())  # no grant
    assert client.keys("*") == []


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="bounds"):
        MarginPolicy(floor=0.2, ceiling=0.1)
    with pytest.raises(ValueError, match="half"):
        MarginPolicy(half_life_s=0)
    with pytest.raises(ValueError, match="widen"):
        MarginPolicy(widen=0.5)
    with pytest.raises(ValueError, match="IDV_QUOTA_MARGIN_FLOOR"):
        load_settings(quota_margin_floor=0.05, quota_margin_ceiling=0.01)
    fixed = MarginPolicy.from_settings(load_settings(quota_margin_learning=False).quotas)
    assert fixed.floor == fixed.ceiling == 0.015


class JitteryProvider:
    """A sliding 1-second quota that counts each request ``U(0, jitter)`` after its grant;
    a request that finds ``quota`` requests counted in the second before it is throttled."""

    def __init__(self, quota: float, jitter: float, seed: int) -> None:
        self.quota = int(quota)
        self.jitter = jitter
        self.rng = random.Random(seed)
        self.served: list[float] = []
        self.throttled = 0

    def arrive(self, granted_at: float) -> bool:
        at = granted_at + self.rng.uniform(0, self.jitter)
        lo = bisect.bisect_right(self.served, at - 1.0)
        hi = bisect.bisect_right(self.served, at)
        if hi - lo >= self.quota:
            self.throttled += 1
            return False
        bisect.insort(self.served, at)
        return True


def simulate(jitter: float, seconds: float, seed: int = 1) -> tuple[float, float, float]:
    """8 bulk workers on one bucket; returns (served rate / quota in the last half,
    throttled share of all calls, final margin)."""
    limiter, clock, _, _ = make(quota=QUOTA)
    provider = JitteryProvider(QUOTA, jitter, seed)
    rng = random.Random(seed)
    sim = Sim(limiter, clock)
    start = clock.t

    def on_grant(caller: object, now: float) -> None:
        if not provider.arrive(now):
            limiter.feedback(PRODUCT, API, throttled=True)

    sim.on_grant = on_grant
    sim.bulk_workers(8, clock.t, lambda: rng.uniform(0, 0.002))
    sim.run(start + seconds)
    half = start + seconds / 2
    served_late = sum(1 for t in provider.served if t >= half)
    rate = served_late / (seconds / 2) / QUOTA
    calls = len(provider.served) + provider.throttled
    return rate, provider.throttled / calls, margin_of(limiter)


def test_without_jitter_the_margin_settles_near_the_floor() -> None:
    rate, throttled, margin = simulate(jitter=0.0, seconds=120)
    assert throttled == 0
    assert margin < 0.005
    assert rate >= 0.99


def test_with_jitter_it_learns_a_margin_that_stops_the_throttles() -> None:
    """20 ms of arrival jitter: the margin grows from the floor to ~2% within a few throttles."""
    rate, throttled, margin = simulate(jitter=0.020, seconds=300)
    assert 0.012 < margin < 0.06
    assert throttled < 0.002
    assert rate >= 0.97
