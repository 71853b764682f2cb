"""Per (product code, API) quotas over every sliding 1-second window, and the call statistics.

A request is admitted only if fewer than ``quota`` requests were served in the last second.
``max_in_window`` is the most served requests seen in any 1-second window: since a window's
count only grows when a request is served, the maximum is reached at a window ending at one,
so checking the count right after each admission is exact.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

WINDOW = 1.0


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


class QuotaBook:
    """Quotas, sliding windows and stats keyed by ``(product, action)``."""

    def __init__(self, quotas: dict[str, float], now: Callable[[], float] = time.monotonic) -> None:
        self._initial = dict(quotas)
        self.quotas = dict(quotas)
        self._now = now
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

    def admit(self, product: str, action: str) -> bool:
        """Count one request; False (and counted as throttled) if the window is full."""
        key = (product, action)
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = SlidingWindow()
        now = self._now()
        count = window.count(now)
        entry = self.entry(product, action)
        limit = self.limit(product, action)
        if limit is not None and count >= limit:
            entry.throttled += 1
            return False
        window.times.append(now)
        entry.served += 1
        if count + 1 > entry.max_in_window:
            entry.max_in_window = count + 1
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
        self.quotas = dict(self._initial)

    def reset_stats(self) -> None:
        self.stats.clear()
        self.rejected.clear()
        self._windows.clear()

    def snapshot(self) -> dict[str, Any]:
        return {
            action: {product: s.as_dict() for product, s in by_product.items()}
            for action, by_product in self.stats.items()
        }
