"""Per (product code, API) quotas under a chosen algorithm, and the call statistics.

Algorithms, one state per (product, API), the quota read at each call (it may change at run
time):

- ``sliding`` (default): admitted only if fewer than ``quota`` calls were served in the last
  second, for every sliding 1-second window;
- ``fixed``: at most ``quota`` calls per whole second of the emulator's monotonic clock, the
  count starting again at each second (up to twice the quota across a boundary);
- ``token-bucket``: ``quota`` tokens a second into a bucket of ``burst`` tokens (the quota
  itself unless configured), one token per call.

``max_in_window`` is the most served requests seen in any sliding 1-second window, whatever
the algorithm: since a window's count only grows when a request is served, the maximum is
reached at a window ending at one, so checking the count right after each admission is exact.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from worker.emulator.config import ConfigError

WINDOW = 1.0
ALGORITHMS = ("sliding", "fixed", "token-bucket")
# Refill arithmetic in floating point may miss a whole token by a rounding error.
_EPSILON = 1e-9


@dataclass
class ActionStats:
    """Counters for one action of one product code."""

    served: int = 0
    throttled: int = 0
    errors: int = 0
    max_in_window: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "served": self.served,
            "throttled": self.throttled,
            "errors": self.errors,
            "max_in_window": self.max_in_window,
        }


@dataclass
class SlidingWindow:
    """Times (monotonic seconds) of the requests served in the last ``WINDOW`` seconds."""

    times: deque[float] = field(default_factory=deque)

    def count(self, now: float) -> int:
        times = self.times
        horizon = now - WINDOW
        while times and times[0] <= horizon:
            times.popleft()
        return len(times)


class Limiter(Protocol):
    def admit(self, now: float, quota: float) -> bool:
        """Take one call at ``now`` under ``quota`` calls a second; False if over."""
        ...


class SlidingLimiter:
    def __init__(self) -> None:
        self.window = SlidingWindow()

    def admit(self, now: float, quota: float) -> bool:
        if self.window.count(now) >= quota:
            return False
        self.window.times.append(now)
        return True


class FixedWindowLimiter:
    def __init__(self) -> None:
        self.second = -math.inf
        self.count = 0

    def admit(self, now: float, quota: float) -> bool:
        second = math.floor(now / WINDOW)
        if second != self.second:
            self.second, self.count = second, 0
        if self.count >= quota:
            return False
        self.count += 1
        return True


class TokenBucketLimiter:
    def __init__(self, burst: float | None) -> None:
        self.burst = burst
        self.tokens: float | None = None
        self.last = 0.0

    def admit(self, now: float, quota: float) -> bool:
        capacity = self.burst if self.burst is not None else max(1.0, quota)
        if self.tokens is None:
            self.tokens = capacity
        else:
            self.tokens = min(capacity, self.tokens + max(0.0, now - self.last) * quota)
        self.last = now
        if self.tokens + _EPSILON < 1:
            return False
        self.tokens -= 1
        return True


def check_algorithm(algorithm: str, burst: float | None) -> None:
    """``ConfigError`` unless ``algorithm`` is known and ``burst`` (if any) is at least 1."""
    if algorithm not in ALGORITHMS:
        raise ConfigError(f"quota algorithm must be one of {', '.join(ALGORITHMS)}")
    if burst is not None and not burst >= 1:
        raise ConfigError("quota burst must be a number >= 1")


def new_limiter(algorithm: str, burst: float | None) -> Limiter:
    if algorithm == "fixed":
        return FixedWindowLimiter()
    if algorithm == "token-bucket":
        return TokenBucketLimiter(burst)
    return SlidingLimiter()


class QuotaBook:
    """Quotas, limiter states and stats keyed by ``(product, action)``."""

    def __init__(
        self,
        quotas: dict[str, float],
        now: Callable[[], float] = time.monotonic,
        algorithm: str = "sliding",
        burst: float | None = None,
    ) -> None:
        check_algorithm(algorithm, burst)
        self._initial = dict(quotas)
        self._initial_algorithm = (algorithm, burst)
        self.quotas = dict(quotas)
        self.algorithm, self.burst = algorithm, burst
        self._now = now
        self._limiters: dict[tuple[str, str], Limiter] = {}
        self._windows: dict[tuple[str, str], SlidingWindow] = {}
        self.stats: dict[str, dict[str, ActionStats]] = {}
        self.rejected: dict[str, int] = {}

    def limit(self, product: str, action: str) -> float | None:
        """The QPS for ``action`` of ``product`` (per-API override first); None if unlimited."""
        override = self.quotas.get(f"{product}:{action}")
        return override if override is not None else self.quotas.get(product)

    def knows(self, product: str) -> bool:
        return product in self.quotas

    def entry(self, product: str, action: str) -> ActionStats:
        by_product = self.stats.setdefault(action, {})
        found = by_product.get(product)
        if found is None:
            found = by_product[product] = ActionStats()
        return found

    def set_algorithm(self, algorithm: str, burst: float | None = None) -> None:
        """Switch algorithm (``ConfigError`` if unknown); every limiter starts afresh."""
        check_algorithm(algorithm, burst)
        self.algorithm, self.burst = algorithm, burst
        self._limiters.clear()

    def admit(self, product: str, action: str) -> bool:
        """Count one request; False (and counted as throttled) if over the quota."""
        key = (product, action)
        now = self._now()
        entry = self.entry(product, action)
        limit = self.limit(product, action)
        if limit is not None:
            limiter = self._limiters.get(key)
            if limiter is None:
                limiter = self._limiters[key] = new_limiter(self.algorithm, self.burst)
            if not limiter.admit(now, limit):
                entry.throttled += 1
                return False
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = SlidingWindow()
        count = window.count(now) + 1
        window.times.append(now)
        entry.served += 1
        entry.max_in_window = max(entry.max_in_window, count)
        return True

    def record_error(self, product: str | None, action: str, code: str) -> None:
        """An error answer: per action/product when known, else by error code."""
        if product is None:
            self.rejected[code] = self.rejected.get(code, 0) + 1
        else:
            self.entry(product, action).errors += 1

    def update(self, quotas: dict[str, float]) -> None:
        self.quotas.update(quotas)

    def reset_quotas(self) -> None:
        """Back to the starting quotas and algorithm."""
        self.quotas = dict(self._initial)
        self.set_algorithm(*self._initial_algorithm)

    def reset_stats(self) -> None:
        self.stats.clear()
        self.rejected.clear()
        self._windows.clear()
        self._limiters.clear()

    def snapshot(self) -> dict[str, Any]:
        return {
            action: {product: s.as_dict() for product, s in by_product.items()}
            for action, by_product in self.stats.items()
        }

    def policy(self) -> dict[str, Any]:
        return {"algorithm": self.algorithm, "burst": self.burst}
