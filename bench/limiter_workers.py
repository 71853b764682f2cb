"""Worker processes of ``bench/limiter.py``: each makes real DocOcrV2 calls to the emulator.

Every process builds its own clients after the fork (nothing is shared across processes) and
calls the emulator through ``CloudAuthClient`` with one attempt per call (``Spec.attempts``;
the quota-algorithm matrix lets the client retry throttled calls, so a call is lost only if
every attempt fails), so each request the emulator sees is one slot taken; the emulator's
stats are the ground truth.
"""

from __future__ import annotations

import contextlib
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.cloudauth import DEFAULT_QUOTAS
from worker.cloudauth.client import CloudAuthClient
from worker.cloudauth.errors import CloudAuthError
from worker.ratelimit import WAIT, CallContext, Lane, QuotaTable, RateGate, RedisRateLimiter
from worker.settings import Settings, load_settings

PRODUCT, API = "ID_OCR_MIN", "DocOcrV2"
AK, SECRET = "bench-key", "bench-secret"


@dataclass(frozen=True)
class Spec:
    """What one worker process does."""

    kind: str  # "ours" | "limits"
    endpoint: str
    redis_url: str
    quota: float
    namespace: str
    image_b64: str
    doc_type: str
    margin: float = 0.015
    attempts: int = 1


def settings_for(spec: Spec) -> Settings:
    return load_settings(
        endpoint=spec.endpoint,
        access_key_id=AK,
        access_key_secret=SECRET,
        quotas={PRODUCT: spec.quota},
        quota_safety_margin=spec.margin,
        redis_url=spec.redis_url,
        namespace=spec.namespace,
        read_timeout=30,
    )


class LimitsGate:
    """The ``limits`` library's Redis moving window, used the way it is meant to be: hit,
    and if refused sleep until the window says the oldest hit leaves it, then try again."""

    def __init__(self, redis_url: str, quota: float, namespace: str) -> None:
        from limits import RateLimitItemPerSecond
        from limits.storage import RedisStorage
        from limits.strategies import MovingWindowRateLimiter

        self._item = RateLimitItemPerSecond(int(quota))
        self._storage = RedisStorage(redis_url, key_prefix=namespace.rstrip(":"))
        self._limiter = MovingWindowRateLimiter(self._storage)
        self.retries = 0

    def acquire(self, product_code: str, api: str, ctx: CallContext) -> None:
        key = f"{product_code}:{api}"
        while not self._limiter.hit(self._item, key):
            self.retries += 1
            stats = self._limiter.get_window_stats(self._item, key)
            time.sleep(max(0.0005, stats.reset_time - time.time()))

    def feedback(
        self, product_code: str, api: str, *, throttled: bool, sent_at: float | None = None
    ) -> None:
        return None


def our_limiter(redis_url: str, settings: Settings, **options: Any) -> RedisRateLimiter:
    """The project's limiter with the quotas and namespace of ``settings``."""
    return RedisRateLimiter(
        redis.Redis.from_url(redis_url),
        QuotaTable(settings.quotas, DEFAULT_QUOTAS),
        namespace=settings.redis.namespace,
        **options,
    )


def make_gate(spec: Spec, settings: Settings) -> RateGate:
    if spec.kind == "ours":
        return our_limiter(spec.redis_url, settings)
    if spec.kind == "limits":
        return LimitsGate(spec.redis_url, spec.quota, spec.namespace)
    raise ValueError(spec.kind)


def call_once(client: CloudAuthClient, spec: Spec, ctx: CallContext, n: int) -> bool:
    """One DocOcrV2 call; False if the provider (emulator) refused it."""
    try:
        client.doc_ocr_v2(
            merchant_biz_id=f"bench{n}",
            merchant_user_id="bench-user",
            doc_type=spec.doc_type,
            image_base64=spec.image_b64,
            ctx=ctx,
        )
    except CloudAuthError:
        return False
    return True


def warm_up(client: CloudAuthClient) -> None:
    """One call to another API (its own quota) so the connection is open before the run:
    a first request's set-up time lands between grant and arrival, where no limiter sees it."""
    with contextlib.suppress(CloudAuthError):
        client.initialize(product_code="eKYC", merchant_biz_id="warm", merchant_user_id="warm")


def saturate(spec: Spec, lane: str, start: Any, stop: Any, out: Any) -> None:
    """Call as fast as the gate allows until ``stop``; report (calls, refused)."""
    settings = settings_for(spec)
    client = CloudAuthClient(
        settings.provider, gate=make_gate(spec, settings), max_attempts=spec.attempts
    )
    ctx = CallContext(Lane(lane))
    calls = refused = 0
    warm_up(client)
    start.wait(120)
    try:
        while not stop.is_set():
            calls += 1
            refused += not call_once(client, spec, ctx, calls)
    finally:
        client.close()
        out.put(("saturate", calls, refused))


class WaitRecorder:
    """Metrics hook keeping the limiter's own (Redis-time) waits."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def incr(self, name: str, value: float = 1, **labels: str) -> None:
        return None

    def observe(self, name: str, value: float, **labels: str) -> None:
        if name == WAIT:
            self.waits.append(value)

    def gauge(self, name: str, value: float, **labels: str) -> None:
        return None


class TimedGate:
    """Our limiter, timing each acquire as the caller sees it (wall clock)."""

    def __init__(self, limiter: RedisRateLimiter) -> None:
        self.limiter = limiter
        self.waits: list[tuple[float, float]] = []  # (end time, seconds waited)

    def acquire(self, product_code: str, api: str, ctx: CallContext) -> None:
        began = time.perf_counter()
        self.limiter.acquire(product_code, api, ctx)
        self.waits.append((time.time(), time.perf_counter() - began))

    def feedback(
        self, product_code: str, api: str, *, throttled: bool, sent_at: float | None = None
    ) -> None:
        self.limiter.feedback(product_code, api, throttled=throttled, sent_at=sent_at)


def realtime(spec: Spec, rate: float, seed: int, start: Any, stop: Any, out: Any) -> None:
    """Realtime calls arriving at random (Poisson, ``rate`` per second) until ``stop``."""
    settings = settings_for(spec)
    recorder = WaitRecorder()
    limiter = our_limiter(spec.redis_url, settings, metrics=recorder)
    gate = TimedGate(limiter)
    client = CloudAuthClient(settings.provider, gate=gate, max_attempts=1)
    rng = random.Random(seed)
    ctx = CallContext(Lane.REALTIME)
    refused = 0
    warm_up(client)
    gate.waits.clear()  # the warm-up call is not a realtime arrival
    recorder.waits.clear()
    start.wait(120)
    try:
        # Wait for arrivals with the stop event (the pacing of a load generator).
        while not stop.wait(rng.expovariate(rate)):
            refused += not call_once(client, spec, ctx, len(gate.waits))
    finally:
        client.close()
        out.put(("realtime", gate.waits, recorder.waits, refused))
