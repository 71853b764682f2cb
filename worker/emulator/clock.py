"""The emulator's business clock: real time shifted by an offset and run at a chosen speed.

Business time (link expiry, fresh-link window, retention, completion time) reads this clock so
tests cross 15 minutes or 30 days by moving it; signature dates and quota windows use real time.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class EmulatedClock:
    """``now() = anchor + (real - real_anchor) * speed``; re-anchored on every change."""

    def __init__(self, real: Callable[[], float] = time.time) -> None:
        self._real = real
        self._real_anchor = real()
        self._emu_anchor = self._real_anchor
        self._speed = 1.0

    def now(self) -> float:
        """Emulated epoch seconds."""
        return self._emu_anchor + (self._real() - self._real_anchor) * self._speed

    @property
    def speed(self) -> float:
        return self._speed

    def offset(self) -> float:
        """Emulated minus real time, in seconds."""
        return self.now() - self._real()

    def set_offset(self, offset: float) -> None:
        """Make the clock read real time plus ``offset`` seconds from now on."""
        real = self._real()
        self._real_anchor, self._emu_anchor = real, real + offset

    def advance(self, seconds: float) -> None:
        """Jump forward (or back, if negative) by ``seconds``."""
        now = self.now()
        self._real_anchor, self._emu_anchor = self._real(), now + seconds

    def set_speed(self, factor: float) -> None:
        """Run emulated time ``factor`` times as fast as real time (0 freezes it)."""
        if factor < 0:
            raise ValueError("speed must be >= 0")
        now = self.now()
        self._real_anchor, self._emu_anchor = self._real(), now
        self._speed = float(factor)

    def reset(self) -> None:
        """Back to real time at normal speed."""
        self._real_anchor = self._emu_anchor = self._real()
        self._speed = 1.0
