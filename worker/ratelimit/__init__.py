"""The global, deadline-aware rate limiter (Redis, Lua) and the rate-gate contract every
provider call passes.
"""

from __future__ import annotations

from worker.ratelimit.admin import (
    BucketStatus,
    QuotaAccount,
    find_buckets,
    read_account,
    read_bucket,
    read_status,
)
from worker.ratelimit.gate import (
    CallContext,
    DeadlineUnreachable,
    GateError,
    GateUnavailable,
    Lane,
    MaxWaitExceeded,
    RateGate,
    UnlimitedGate,
)
from worker.ratelimit.limiter import (
    DEFAULT_HORIZONS,
    DEFAULT_MAX_WAIT,
    EARLY_S,
    FACTOR,
    LATENESS_SHARE,
    METRICS,
    MIN_GRACE,
    REFUSED,
    THROTTLED,
    UNAVAILABLE,
    WAIT,
    Clock,
    RedisRateLimiter,
    Reservation,
    Sleep,
    Ticket,
    limiter_redis,
)
from worker.ratelimit.policies import AdaptivePolicy, MarginPolicy
from worker.ratelimit.quotas import QuotaTable, UnknownProduct
from worker.ratelimit.store import (
    STATE_TTL_MS,
    BucketKeys,
    bucket_keys,
    parse_state_key,
    state_key_pattern,
)

__all__ = [
    "DEFAULT_HORIZONS",
    "DEFAULT_MAX_WAIT",
    "EARLY_S",
    "FACTOR",
    "LATENESS_SHARE",
    "METRICS",
    "MIN_GRACE",
    "REFUSED",
    "STATE_TTL_MS",
    "THROTTLED",
    "UNAVAILABLE",
    "WAIT",
    "AdaptivePolicy",
    "BucketKeys",
    "BucketStatus",
    "CallContext",
    "Clock",
    "DeadlineUnreachable",
    "GateError",
    "GateUnavailable",
    "Lane",
    "MarginPolicy",
    "MaxWaitExceeded",
    "QuotaAccount",
    "QuotaTable",
    "RateGate",
    "RedisRateLimiter",
    "Reservation",
    "Sleep",
    "Ticket",
    "UnknownProduct",
    "UnlimitedGate",
    "bucket_keys",
    "find_buckets",
    "limiter_redis",
    "parse_state_key",
    "read_account",
    "read_bucket",
    "read_status",
    "state_key_pattern",
]
