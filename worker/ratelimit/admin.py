"""Read-only views of the rate limiter's buckets (``idv-worker quota status``, dashboards)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, cast

import redis

from worker.ratelimit.gate import Lane
from worker.ratelimit.limiter import LATENESS_SHARE, Clock
from worker.ratelimit.policies import AdaptivePolicy, MarginPolicy
from worker.ratelimit.quotas import QuotaTable, UnknownProduct
from worker.ratelimit.store import (
    BucketKeys,
    bucket_keys,
    parse_state_key,
    state_key_pattern,
)
from worker.redisio import lua_script, number, text


@dataclass(frozen=True, slots=True)
class QuotaAccount:
    """Where a bucket's quota went, summed over its grants (``lua/acquire.lua``): each grant
    moves the schedule on by ``1 / rate`` plus the margin's share, plus the factor's (throttles,
    slow start); time no caller claimed is skipped. Over a span of ``T`` seconds in which
    callers always waited, ``grants / rate + margin_s + factor_s + unclaimed_s`` is ``T``."""

    grants: int = 0
    margin_s: float = 0.0
    factor_s: float = 0.0
    unclaimed_s: float = 0.0

    FIELDS = ("a_grants", "a_margin_s", "a_factor_s", "a_unclaimed_s")

    @classmethod
    def parse(cls, raw: list[Any]) -> QuotaAccount:
        """From ``HMGET state *FIELDS``."""
        values = [text(v) or "0" for v in raw]
        return cls(int(values[0]), float(values[1]), float(values[2]), float(values[3]))

    def minus(self, earlier: QuotaAccount) -> QuotaAccount:
        """What went between ``earlier`` and this reading."""
        return QuotaAccount(
            self.grants - earlier.grants,
            self.margin_s - earlier.margin_s,
            self.factor_s - earlier.factor_s,
            self.unclaimed_s - earlier.unclaimed_s,
        )


def read_account(client: redis.Redis, keys: BucketKeys) -> QuotaAccount:
    """The bucket's accounting now (zeros before its first grant)."""
    raw = client.hmget(keys.state, list(QuotaAccount.FIELDS))
    return QuotaAccount.parse(cast("list[Any]", raw))


@dataclass(frozen=True, slots=True)
class BucketStatus:
    """One bucket as the store sees it now (times are Redis epoch seconds)."""

    bucket: str
    product_code: str
    api: str
    now: float
    configured_rate: float | None  # this process's settings; None if the product is unknown
    stored_rate: float | None  # the quota the workers last used; None before any call
    margin: float  # the learned safety margin now (worker.ratelimit.policies.MarginPolicy)
    burst: int | None
    factor: float  # adaptive factor (throttles, slow start) in (0, 1]
    effective_rate: float | None  # rate * (1 - margin) * factor
    waiting: dict[str, int] = field(default_factory=dict)  # live waiters per lane
    last_throttled: float | None = None
    throttled_total: int = 0
    next_slot_in: float | None = None  # seconds until the next free slot (<= 0: free now)
    margin_floor: float = 0.0
    margin_ceiling: float = 0.0
    gap_mean: float | None = None  # grant-to-send gap the clients report (seconds, EWMA)
    gap_dev: float | None = None  # its mean deviation
    widened: int = 0  # times a throttle widened the margin
    account: QuotaAccount | None = None  # where the quota went since the bucket was created

    @property
    def rate_factor(self) -> float:
        """Share of the quota in use: (1 - margin) x factor (the ``idv_limiter_rate_factor``)."""
        return (1 - self.margin) * self.factor

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (``rate_factor`` included)."""
        return {**asdict(self), "rate_factor": self.rate_factor}


def _optional(value: Any) -> float | None:
    raw = text(value)
    return float(raw) if raw else None


def read_bucket(
    client: redis.Redis,
    quotas: QuotaTable,
    keys: BucketKeys,
    *,
    clock: Clock | None = None,
    policy: AdaptivePolicy | None = None,
    margin: MarginPolicy | None = None,
) -> BucketStatus:
    """Read one bucket without changing it (``clock`` as in ``RedisRateLimiter``)."""
    policy = policy or AdaptivePolicy()
    settings = quotas.settings
    margin = margin or MarginPolicy.from_settings(settings)
    script = client.register_script(lua_script("worker.ratelimit", "status"))
    now_arg = "" if clock is None else f"{clock():.6f}"
    reply = script(
        keys=keys.all(),
        args=[
            now_arg,
            repr(policy.hold_s),
            repr(policy.recovery_per_s),
            repr(policy.restart),
            margin.arg(),
            repr(float(settings.quota_safety_margin)),
            repr(LATENESS_SHARE),
        ],
    )
    now, factor = number(reply[0]), number(reply[1])
    tat = _optional(reply[2])
    stored_rate, learned = _optional(reply[5]), number(reply[6])
    burst = _optional(reply[7])
    try:
        configured: float | None = quotas.quota_for(keys.product_code, keys.api)
    except UnknownProduct:
        configured = None
    rate = stored_rate if stored_rate is not None else configured
    waiting = {lane.value: 0 for lane in Lane}
    pairs = reply[11:]
    for i in range(0, len(pairs) - 1, 2):
        waiting[text(pairs[i])] = int(text(pairs[i + 1]))
    return BucketStatus(
        bucket=keys.bucket,
        product_code=keys.product_code,
        api=keys.api,
        now=now,
        configured_rate=configured,
        stored_rate=stored_rate,
        margin=learned,
        burst=int(burst) if burst is not None else None,
        factor=factor,
        effective_rate=None if rate is None else rate * (1 - learned) * factor,
        waiting=waiting,
        last_throttled=_optional(reply[3]),
        throttled_total=int(text(reply[4]) or 0),
        next_slot_in=None if tat is None else tat - now,
        margin_floor=margin.floor,
        margin_ceiling=margin.ceiling,
        gap_mean=_optional(reply[8]),
        gap_dev=_optional(reply[9]),
        widened=int(text(reply[10]) or 0),
        account=read_account(client, keys),
    )


def find_buckets(client: redis.Redis, namespace: str) -> list[BucketKeys]:
    """Every bucket with state in ``namespace`` (SCAN: fine for tools, not for hot paths)."""
    found: dict[str, BucketKeys] = {}
    for raw in client.scan_iter(match=state_key_pattern(namespace), count=1000):
        keys = parse_state_key(namespace, text(raw))
        if keys is not None:
            found[keys.bucket] = keys
    return [found[name] for name in sorted(found)]


def read_status(
    client: redis.Redis,
    quotas: QuotaTable,
    namespace: str,
    *,
    product_code: str | None = None,
    api: str | None = None,
    clock: Clock | None = None,
    policy: AdaptivePolicy | None = None,
    margin: MarginPolicy | None = None,
) -> list[BucketStatus]:
    """Status of every bucket in the namespace, optionally filtered by product and API.

    With both ``product_code`` and ``api`` the bucket is shown even before its first call.
    """
    if product_code is not None and api is not None:
        buckets = [bucket_keys(namespace, product_code, api)]
    else:
        buckets = [
            keys
            for keys in find_buckets(client, namespace)
            if product_code in (None, keys.product_code) and api in (None, keys.api)
        ]
    return [
        read_bucket(client, quotas, keys, clock=clock, policy=policy, margin=margin)
        for keys in buckets
    ]
