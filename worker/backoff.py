"""Jittered exponential backoff, written once for every retry loop of the project."""

from __future__ import annotations

import random

_rng = random.Random()


def jittered(
    attempt: int, *, base_s: float, cap_s: float, rng: random.Random | None = None
) -> float:
    """A delay for retry number ``attempt`` (0-based): uniform in [ceiling/2, ceiling].

    ``ceiling = min(cap_s, base_s * 2**attempt)``; the jitter keeps retries of many workers
    from arriving together.
    """
    ceiling = min(cap_s, base_s * (2 ** min(max(attempt, 0), 62)))
    return (rng or _rng).uniform(ceiling / 2, ceiling)
