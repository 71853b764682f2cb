"""Adaptive slow-down on ``Throttling.*`` and gradual recovery, in controlled time."""

from __future__ import annotations

import itertools

import fakeredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.ratelimit.sim import API, PRODUCT, FakeClock, limiter_for
from worker.ratelimit import (
    AdaptivePolicy,
    CallContext,
    Lane,
    MarginPolicy,
    RedisRateLimiter,
    read_status,
)
from worker.settings import load_settings

POLICY = AdaptivePolicy(decrease=0.5, floor=0.1, hold_s=1.0, recovery_per_s=0.1, restart=1.0)
QUOTA, MARGIN = 20.0, 0.01


class Recorder:
    """A ``worker.observability.Metrics`` that keeps what it is told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, float, dict[str, str]]] = []

    def incr(self, name: str, value: float = 1, **labels: str) -> None:
        self.events.append((name, value, labels))

    def observe(self, name: str, value: float, **labels: str) -> None:
        self.events.append((name, value, labels))

    def gauge(self, name: str, value: float, **labels: str) -> None:
        self.events.append((name, value, labels))


class Model:
    """The policy written out plainly, to compare the scripts against."""

    def __init__(self, policy: AdaptivePolicy) -> None:
        self.p = policy
        self.factor: float | None = None
        self.last_throttled = 0.0
        self.last_decrease: float | None = None

    def at(self, t: float) -> float:
        if self.factor is None:
            return 1.0
        grown = self.factor + self.p.recovery_per_s * max(
            0.0, t - self.last_throttled - self.p.hold_s
        )
        return min(1.0, grown)

    def throttle(self, t: float) -> None:
        f = self.at(t)
        if self.last_decrease is None or t - self.last_decrease >= self.p.hold_s:
            f = max(self.p.floor, f * self.p.decrease)
            self.last_decrease = t
        self.factor, self.last_throttled = f, t


def make() -> tuple[RedisRateLimiter, FakeClock, fakeredis.FakeRedis, Recorder]:
    clock = FakeClock()
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    conf = load_settings(quotas={PRODUCT: QUOTA}, quota_safety_margin=MARGIN)
    metrics = Recorder()
    # A fixed margin is at its ceiling: every throttle goes to the rate factor.
    limiter = limiter_for(
        client,
        conf,
        clock=clock,
        sleep=clock.sleep,
        metrics=metrics,
        policy=POLICY,
        margin=MarginPolicy.fixed(MARGIN),
    )
    return limiter, clock, client, metrics


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(events=st.lists(st.tuples(st.floats(0.0, 4.0), st.booleans()), min_size=1, max_size=25))
def test_factor_follows_the_policy(events: list[tuple[float, bool]]) -> None:
    """Throttles divide the rate (once per hold), clean time brings it back linearly."""
    limiter, clock, _, metrics = make()
    model = Model(POLICY)
    for delay, throttled in events:
        clock.t += delay
        seen = float(f"{clock.t:.6f}")  # the time as the scripts receive it
        if throttled:
            limiter.feedback(PRODUCT, API, throttled=True)
            model.throttle(seen)
            name, value, labels = metrics.events[-1]
            assert (name, labels) == ("idv_limiter_rate_factor", {"bucket": f"{PRODUCT}:{API}"})
            assert value == pytest.approx((1 - MARGIN) * model.at(seen), abs=1e-5)
        else:
            limiter.feedback(PRODUCT, API, throttled=False)  # costs nothing, changes nothing
        res = limiter.reserve(PRODUCT, API, CallContext(Lane.BULK))
        expected = model.at(seen)
        assert res.factor == pytest.approx(expected, abs=1e-5)
        assert res.interval == pytest.approx(1 / (QUOTA * (1 - MARGIN) * expected), rel=1e-5)
        assert POLICY.floor - 1e-9 <= res.factor <= 1.0


def test_slow_down_spaces_grants_and_recovery_restores_the_rate() -> None:
    limiter, clock, client, metrics = make()
    normal = 1 / (QUOTA * (1 - MARGIN))
    limiter.wait_for_slot(PRODUCT, API, CallContext(Lane.BULK))
    assert metrics.events == []  # never between a grant and its request
    limiter.feedback(PRODUCT, API, throttled=False)
    assert metrics.events == [
        ("idv_limiter_wait_seconds", 0.0, {"bucket": f"{PRODUCT}:{API}", "lane": "bulk"})
    ]
    for _ in range(5):  # one episode throttles every request in flight: one decrease
        limiter.feedback(PRODUCT, API, throttled=True)
    grants = [limiter.wait_for_slot(PRODUCT, API, CallContext(Lane.BULK)) for _ in range(4)]
    gaps = [b.now - a.now for a, b in itertools.pairwise(grants)]
    assert gaps == pytest.approx([normal / 0.5] * 3, rel=1e-4)

    [status] = read_status(
        client, limiter.quotas, limiter.namespace, clock=clock, policy=POLICY, margin=limiter.margin
    )
    assert status.factor == pytest.approx(0.5, abs=1e-5)
    assert status.effective_rate == pytest.approx(QUOTA * (1 - MARGIN) * 0.5, rel=1e-5)
    assert status.throttled_total == 5
    assert status.last_throttled is not None
    assert status.last_throttled <= clock.t

    clock.t += POLICY.hold_s + 0.5 / POLICY.recovery_per_s  # enough clean seconds to recover
    grants = [limiter.wait_for_slot(PRODUCT, API, CallContext(Lane.BULK)) for _ in range(3)]
    assert grants[-1].factor == 1.0
    assert grants[-1].now - grants[-2].now == pytest.approx(normal, rel=1e-4)


def test_repeated_episodes_never_go_below_the_floor() -> None:
    limiter, clock, _, _ = make()
    for _ in range(20):
        limiter.feedback(PRODUCT, API, throttled=True)
        clock.t += POLICY.hold_s
    res = limiter.reserve(PRODUCT, API, CallContext(Lane.REALTIME))
    assert res.factor == pytest.approx(POLICY.floor)


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="decrease"):
        AdaptivePolicy(decrease=1.5)
    with pytest.raises(ValueError, match="floor"):
        AdaptivePolicy(floor=0)
    with pytest.raises(ValueError, match="restart"):
        AdaptivePolicy(restart=0)
