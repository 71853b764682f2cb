"""The limiter on a real Redis: its scripts with Redis TIME, many processes, fail-closed."""

from __future__ import annotations

import itertools
import multiprocessing
import random
import time
from pathlib import Path

import fakeredis
import pytest
import redis

from tests.fixtures.servers import RedisServer, port_open, wait_until
from tests.integration.ratelimit.procs import hammer
from tests.unit.ratelimit.sim import (
    API,
    PRODUCT,
    Caller,
    FakeClock,
    Sim,
    limiter_for,
    max_in_window,
    quota_table,
)
from worker.observability import NullMetrics
from worker.ratelimit import (
    LATENESS_SHARE,
    AdaptivePolicy,
    CallContext,
    GateUnavailable,
    Lane,
    RedisRateLimiter,
    limiter_redis,
    read_status,
)
from worker.settings import QuotaSettings, load_settings

# The share of a quota the default safety margin keeps.
KEEP = 1 - QuotaSettings.model_fields["quota_safety_margin"].default

QUOTA = 20.0


def test_scripts_run_on_redis_with_its_own_clock(redis_client: redis.Redis) -> None:
    settings = load_settings(quotas={PRODUCT: QUOTA})
    limiter = limiter_for(redis_client, settings)
    grants = [limiter.wait_for_slot(PRODUCT, API, CallContext(Lane.BULK)) for _ in range(4)]
    interval = grants[0].interval
    # A fresh bucket starts slowly (AdaptivePolicy.restart), then ramps up.
    assert 0.9 <= grants[0].factor <= grants[-1].factor <= 1.0
    assert interval == pytest.approx(1 / (QUOTA * KEEP * grants[0].factor), rel=1e-5)
    # Spacing comes from the schedule (Redis time), whatever the callers' clocks say.
    assert all(b.now - a.now >= interval * 0.5 for a, b in itertools.pairwise(grants))
    assert grants[-1].now - grants[0].now >= 3 * interval - interval / 2

    waiting = limiter.reserve(PRODUCT, API, CallContext(Lane.ARCHIVAL))
    assert not waiting.granted
    assert 0 < waiting.wait_s <= interval
    limiter.feedback(PRODUCT, API, throttled=True)

    [status] = read_status(redis_client, quota_table(settings), settings.redis.namespace)
    assert status.bucket == f"{PRODUCT}:{API}"
    assert status.configured_rate == QUOTA
    assert status.stored_rate == QUOTA
    # The throttle widened the learned margin (the initial one, doubled); the rate factor
    # is only the slow start of a fresh bucket.
    assert status.margin == pytest.approx(2 * (1 - KEEP), abs=1e-4)
    assert AdaptivePolicy().restart <= status.factor < AdaptivePolicy().restart + 0.05
    assert status.effective_rate == pytest.approx(
        QUOTA * (1 - status.margin) * status.factor, rel=1e-6
    )
    assert status.waiting == {"realtime": 0, "archival": 1, "bulk": 0}
    assert status.last_throttled == pytest.approx(status.now, abs=5.0)

    keys = redis_client.keys("*")
    assert len(keys) == 3
    assert all(0 < redis_client.pttl(key) <= 3_600_000 for key in keys)


def test_real_redis_and_fakeredis_agree_step_by_step(redis_client: redis.Redis) -> None:
    """The same scenario in passed-in time gives the same grants on both stores."""
    outcomes = []
    for client in (redis_client, fakeredis.FakeRedis(server=fakeredis.FakeServer())):
        clock = FakeClock()
        settings = load_settings(quotas={PRODUCT: QUOTA})
        limiter = limiter_for(client, settings, clock=clock, sleep=clock.sleep)
        rng = random.Random(7)
        sim = Sim(limiter, clock)
        sim.bulk_workers(3, clock.t, lambda rng=rng: rng.uniform(0, 0.004))
        for i in range(4):
            sim.add(Caller(f"rt-{i}", Lane.REALTIME, clock.t + 0.13 + 0.31 * i))
        sim.add(Caller("late-archival", Lane.ARCHIVAL, clock.t + 0.5))
        sim.run(clock.t + 1.5)
        outcomes.append([(round(t, 6), c.name) for t, c in sim.grants])
    assert len(outcomes[0]) > 25
    assert outcomes[0] == outcomes[1]


@pytest.mark.serial  # asserts a rate / a time bound: not beside other tests
def test_processes_hold_the_quota_together(redis_url: str) -> None:
    quota, duration = 30.0, 2.5
    ctx = multiprocessing.get_context("fork")
    lanes = ["bulk"] * 5 + ["realtime"]
    start = ctx.Event()
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=hammer,
            args=(redis_url, quota, duration, lane, 0.1 if lane == "realtime" else 0.0, start, out),
        )
        for lane in lanes
    ]
    for proc in procs:
        proc.start()
    start.set()
    results = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    times = sorted(t for grants in results for t in grants)
    assert all(results), "every process got slots"
    assert max_in_window(times) <= quota
    # Whole seconds in the middle of the run, away from start-up and wind-down.
    inner = [t for t in times if times[0] + 0.5 <= t < times[0] + 2.0]
    achieved = len(inner) / 1.5
    assert achieved >= 0.85 * quota, f"achieved {achieved:.1f}/s of {quota}"


def test_fails_closed_and_recovers_by_itself(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    try:
        settings = load_settings(quotas={PRODUCT: QUOTA}, redis_url=server.url)

        class Counting(NullMetrics):
            unavailable_count = 0

            def incr(self, name: str, value: float = 1, **labels: str) -> None:
                super().incr(name, value, **labels)  # checks names and labels
                if name == "idv_limiter_unavailable":
                    Counting.unavailable_count += 1

        client = limiter_redis(settings.redis, timeout=1.0)
        limiter = limiter_for(client, settings, metrics=Counting())
        assert limiter.wait_for_slot(PRODUCT, API, CallContext()).granted

        server.stop()
        with pytest.raises(GateUnavailable) as info:
            limiter.acquire(PRODUCT, API, CallContext())
        assert info.value.bucket == f"{PRODUCT}:{API}"
        assert "ConnectionError" in info.value.reason
        assert "no call was made" in str(info.value)
        limiter.feedback(PRODUCT, API, throttled=True)  # after a call: logged, never raised
        assert Counting.unavailable_count == 2

        server.start()  # same port, empty: no state and no cached scripts
        wait_until(lambda: port_open(server.port), timeout=15)
        assert limiter.wait_for_slot(PRODUCT, API, CallContext()).granted
        assert limiter.reserve(PRODUCT, API, CallContext()).granted is False
        client.close()
    finally:
        server.stop()


def test_learned_margin_on_real_redis_matches_fakeredis(redis_client: redis.Redis) -> None:
    """Throttles, gaps and quiet time in passed-in time: both stores learn the same margin."""
    learned = []
    for client in (redis_client, fakeredis.FakeRedis(server=fakeredis.FakeServer())):
        clock = FakeClock()
        settings = load_settings(quotas={PRODUCT: QUOTA})
        limiter = limiter_for(client, settings, clock=clock, sleep=clock.sleep)
        sim = Sim(limiter, clock)
        rng = random.Random(11)

        def on_grant(
            caller: Caller, now: float, sim: Sim = sim, limiter: RedisRateLimiter = limiter
        ) -> None:
            if len(sim.grants) in (7, 8, 40):
                limiter.feedback(PRODUCT, API, throttled=True)

        sim.on_grant = on_grant
        sim.bulk_workers(4, clock.t, lambda rng=rng: rng.uniform(0, 0.003))
        sim.run(clock.t + 30.0)
        [status] = read_status(client, quota_table(settings), settings.redis.namespace, clock=clock)
        learned.append((round(status.margin, 6), status.widened, status.throttled_total))
        assert status.margin_floor <= status.margin <= status.margin_ceiling
        # Widened twice (7 and 8 are one episode), then narrowing after the quiet time.
        assert status.widened == 2
        assert status.throttled_total == 3
        client.flushall()
    assert learned[0] == learned[1]


def test_gap_feedback_on_real_redis(redis_client: redis.Redis) -> None:
    settings = load_settings(quotas={PRODUCT: QUOTA})
    limiter = limiter_for(redis_client, settings)
    for delay in (0.0, 0.004, 0.0, 0.004) * 4:
        limiter.acquire(PRODUCT, API, CallContext(Lane.BULK))
        limiter.feedback(PRODUCT, API, throttled=False, sent_at=time.monotonic() + delay)
    [status] = read_status(redis_client, quota_table(settings), settings.redis.namespace)
    assert status.gap_mean is not None
    assert status.gap_dev is not None
    assert 0.0005 < status.gap_dev < 0.01
    assert status.margin >= limiter.margin.gap_k * status.gap_dev / (1 - LATENESS_SHARE) - 1e-6
