"""Where a bucket's quota goes: every grant books the schedule's advance beyond ``1 / rate`` to
the margin or the factor, and time no caller claimed as unclaimed; over a saturated span the
parts add up to the span."""

from __future__ import annotations

import fakeredis
import pytest

from tests.unit.ratelimit.sim import API, PRODUCT, FakeClock, limiter_for
from worker.ratelimit import (
    EARLY_S,
    AdaptivePolicy,
    CallContext,
    Lane,
    MarginPolicy,
    QuotaAccount,
    RedisRateLimiter,
    bucket_keys,
    read_account,
    read_status,
)
from worker.settings import load_settings

QUOTA, MARGIN = 10.0, 0.01


def make(
    policy: AdaptivePolicy, margin: MarginPolicy | None = None
) -> tuple[RedisRateLimiter, FakeClock, fakeredis.FakeRedis]:
    clock = FakeClock()
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    conf = load_settings(quotas={PRODUCT: QUOTA}, quota_safety_margin=MARGIN)
    limiter = limiter_for(
        client,
        conf,
        clock=clock,
        sleep=clock.sleep,
        policy=policy,
        margin=margin or MarginPolicy.fixed(MARGIN),
    )
    return limiter, clock, client


def account(limiter: RedisRateLimiter, client: fakeredis.FakeRedis) -> QuotaAccount:
    return read_account(client, bucket_keys(limiter.namespace, PRODUCT, API))


def grant(limiter: RedisRateLimiter, n: int) -> None:
    for _ in range(n):
        limiter.acquire(PRODUCT, API, CallContext(Lane.BULK))


def test_a_saturated_span_is_grants_plus_margin_plus_factor() -> None:
    limiter, clock, client = make(AdaptivePolicy(restart=1.0))
    first = clock()
    grant(limiter, 50)
    spent = account(limiter, client)
    assert spent.grants == 50
    per_grant = 1 / (QUOTA * (1 - MARGIN)) - 1 / QUOTA
    assert spent.margin_s == pytest.approx(50 * per_grant, rel=1e-3)
    assert spent.factor_s == pytest.approx(0, abs=1e-5)
    assert spent.unclaimed_s == pytest.approx(0, abs=1e-5)
    # The schedule stands one interval past the last grant.
    span = clock() - first + 1 / (QUOTA * (1 - MARGIN))
    total = spent.grants / QUOTA + spent.margin_s + spent.factor_s + spent.unclaimed_s
    assert total == pytest.approx(span, rel=1e-4)


def test_slow_start_is_booked_to_the_factor() -> None:
    limiter, _, client = make(AdaptivePolicy(restart=0.9))
    grant(limiter, 20)
    spent = account(limiter, client)
    assert spent.factor_s > 0.05  # ~10% slower at first, recovering
    assert spent.margin_s == pytest.approx(20 * (1 / (QUOTA * (1 - MARGIN)) - 1 / QUOTA), 1e-3)


def test_a_pause_is_unclaimed_time_and_a_first_grant_is_not() -> None:
    limiter, clock, client = make(AdaptivePolicy(restart=1.0))
    grant(limiter, 1)
    assert account(limiter, client).unclaimed_s == 0  # nothing was scheduled before it
    grant(limiter, 4)
    clock.t += 3.0  # nobody asks for 3 s
    before = account(limiter, client)
    grant(limiter, 1)
    gone = account(limiter, client).minus(before)
    assert gone.grants == 1
    assert gone.unclaimed_s == pytest.approx(3.0 - 1 / (QUOTA * (1 - MARGIN)), abs=1e-3)


def test_a_late_caller_books_only_what_the_tolerance_does_not_cover() -> None:
    limiter, clock, client = make(AdaptivePolicy(restart=1.0))
    grant(limiter, 5)
    interval = 1 / (QUOTA * (1 - MARGIN))
    clock.t += interval / 2  # inside one interval: the slot is owed up to the tolerance
    before = account(limiter, client)
    grant(limiter, 1)
    gone = account(limiter, client).minus(before)
    assert 0 <= gone.unclaimed_s < interval / 2


def test_the_status_shows_the_account() -> None:
    limiter, _, client = make(AdaptivePolicy(restart=1.0))
    assert account(limiter, client) == QuotaAccount()  # zeros before any grant
    grant(limiter, 3)
    [status] = read_status(client, limiter.quotas, limiter.namespace, product_code=PRODUCT, api=API)
    assert status.account is not None
    assert status.account.grants == 3
    assert status.as_dict()["account"]["grants"] == 3


def test_minus_is_per_field() -> None:
    a, b = QuotaAccount(10, 1.0, 0.5, 0.25), QuotaAccount(4, 0.5, 0.5, 0.0)
    assert a.minus(b) == QuotaAccount(6, 0.5, 0.0, 0.25)


@pytest.mark.parametrize(("late_s", "slips"), [(0.0008, False), (0.0025, True)])
def test_a_late_wake_up_within_the_lead_costs_no_slot(late_s: float, slips: bool) -> None:
    """Every wake-up comes ``late_s`` late. Waking ``EARLY_S`` early to claim the slot, a
    caller loses nothing while its lateness stays within that lead; beyond it, what the
    tolerance does not cover is booked as unclaimed."""
    clock = FakeClock()
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    quota, margin = 50.0, 0.002
    conf = load_settings(quotas={PRODUCT: quota}, quota_safety_margin=margin)

    def oversleep(seconds: float) -> None:
        clock.t += seconds + late_s

    limiter = limiter_for(
        client,
        conf,
        clock=clock,
        sleep=oversleep,
        policy=AdaptivePolicy(restart=1.0),
        margin=MarginPolicy.fixed(margin),
    )
    grant(limiter, 200)
    spent = account(limiter, client)
    assert EARLY_S < 0.0025
    if slips:
        assert spent.unclaimed_s > 199 * 0.0009  # ~(lateness - lead - tolerance) per slot
    else:
        assert spent.unclaimed_s == pytest.approx(0, abs=1e-4)
