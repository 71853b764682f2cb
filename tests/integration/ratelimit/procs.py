"""Worker processes for the limiter's multi-process tests (module-level for any start method)."""

from __future__ import annotations

import time
from typing import Any

import redis

from tests.unit.ratelimit.sim import limiter_for
from worker.ratelimit import CallContext, Lane
from worker.settings import load_settings

PRODUCT, API = "ID_OCR_MIN", "DocOcrV2"


def hammer(
    url: str, quota: float, duration: float, lane: str, pause: float, start: Any, out: Any
) -> None:
    """Take slots for ``duration`` seconds after ``start``; put the Redis grant times on ``out``."""
    client = redis.Redis.from_url(url)
    limiter = limiter_for(client, load_settings(quotas={PRODUCT: quota}))
    ctx = CallContext(Lane(lane))
    grants: list[float] = []
    start.wait(60)
    end = time.monotonic() + duration
    try:
        while time.monotonic() < end:
            grants.append(limiter.wait_for_slot(PRODUCT, API, ctx).now)
            if pause:
                time.sleep(pause)  # pacing of a light caller, not synchronisation
    finally:
        out.put(grants)
        client.close()
