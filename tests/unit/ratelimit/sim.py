"""A discrete-event simulation of many callers driving the limiter's scripts in controlled time.

Each simulated caller does what ``RedisRateLimiter.wait_for_slot`` does, one ``reserve`` per
event: granted, refused, or scheduled to ask again after ``wait_s`` plus a lateness of its
own (wake-up jitter). The store is fakeredis (with Lua) or a real Redis; the time is passed
in through the limiter's ``clock`` option, so runs are fast and deterministic.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from worker.cloudauth import DEFAULT_QUOTAS
from worker.ratelimit import (
    LATENESS_SHARE,
    CallContext,
    DeadlineUnreachable,
    Lane,
    QuotaTable,
    RedisRateLimiter,
    Ticket,
)
from worker.settings import Settings

PRODUCT, API = "ID_OCR_MIN", "DocOcrV2"


def quota_table(settings: Settings) -> QuotaTable:
    """The limiter's quotas as the builders make them: the settings over the published table."""
    return QuotaTable(settings.quotas, DEFAULT_QUOTAS)


def limiter_for(client: redis.Redis, settings: Settings, **kwargs: Any) -> RedisRateLimiter:
    """A limiter on ``client`` with the quotas and namespace of ``settings``."""
    return RedisRateLimiter(
        client, quota_table(settings), namespace=settings.redis.namespace, **kwargs
    )


class FakeClock:
    """Epoch seconds that only move when told to (also usable as the limiter's ``sleep``)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)


def tolerance(quota: float, margin: float, interval: float) -> float:
    """How late a caller may come without the schedule slipping (ratelimit lua/prelude.lua)."""
    room = quota * interval - 1.0
    return 0.0 if room <= 0 else min(LATENESS_SHARE * room, 0.5 * interval)


@dataclass(eq=False)
class Caller:
    """One acquire: its lane, deadline, arrival and the lateness of each of its wake-ups."""

    name: str
    lane: Lane
    arrival: float
    deadline: float | None = None
    lateness: Callable[[], float] = lambda: 0.0
    ticket: Ticket | None = None
    first_event: int | None = None
    calls: int = 0
    wakeups: list[float] = field(default_factory=list)
    granted_at: float | None = None
    refused: DeadlineUnreachable | None = None

    @property
    def effective_deadline(self) -> float | None:
        return None if self.ticket is None else float(self.ticket.deadline)

    @property
    def waiting(self) -> bool:
        return self.first_event is not None and self.granted_at is None and self.refused is None


@dataclass
class Sim:
    """Runs callers against one bucket; records grants and EDF violations."""

    limiter: RedisRateLimiter
    clock: FakeClock
    grants: list[tuple[float, Caller]] = field(default_factory=list)
    edf_violations: list[tuple[Caller, Caller]] = field(default_factory=list)
    callers: list[Caller] = field(default_factory=list)
    on_grant: Callable[[Caller, float], None] | None = None
    _heap: list[tuple[float, int, Caller]] = field(default_factory=list)
    _order: Iterator[int] = field(default_factory=itertools.count)
    _events: int = 0

    def add(self, caller: Caller, at: float | None = None) -> None:
        self.callers.append(caller)
        self._push(caller.arrival if at is None else at, caller)

    def _push(self, at: float, caller: Caller) -> None:
        heapq.heappush(self._heap, (at, next(self._order), caller))

    def run(self, until: float) -> None:
        """Process every event up to ``until`` (absolute time)."""
        while self._heap and self._heap[0][0] <= until:
            at, _, caller = heapq.heappop(self._heap)
            self.clock.t = max(self.clock.t, at)
            self._events += 1
            if caller.first_event is None:
                caller.first_event = self._events
            self._step(caller)

    def _step(self, caller: Caller) -> None:
        caller.calls += 1
        ctx = CallContext(caller.lane, caller.deadline)
        try:
            res = self.limiter.reserve(PRODUCT, API, ctx, caller.ticket)
        except DeadlineUnreachable as exc:
            caller.refused = exc
            return
        caller.ticket = res.ticket
        if not res.granted:
            late = caller.lateness()
            caller.wakeups.append(late)
            self._push(res.now + res.wait_s + late, caller)
            return
        caller.granted_at = res.slot_start  # now, or a slot claimed just before it starts
        mine = caller.effective_deadline
        assert mine is not None
        for other in self.callers:
            theirs = other.effective_deadline
            if other is not caller and other.waiting and theirs is not None and theirs < mine:
                self.edf_violations.append((caller, other))
        self.grants.append((res.slot_start, caller))
        if self.on_grant is not None:
            self.on_grant(caller, res.slot_start)

    def bulk_workers(self, count: int, start: float, lateness: Callable[[], float]) -> None:
        """``count`` workers with an endless bulk backlog: each asks again once granted."""
        names = itertools.count()

        def spawn(at: float) -> None:
            self.add(Caller(f"bulk-{next(names)}", Lane.BULK, at, lateness=lateness))

        previous = self.on_grant

        def again(caller: Caller, now: float) -> None:
            if previous is not None:
                previous(caller, now)
            if caller.lane is Lane.BULK:
                spawn(now)

        self.on_grant = again
        for _ in range(count):
            spawn(start)


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """Most grants in any half-open window ``(t - window, t]`` (the provider's count)."""
    ordered = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(ordered):
        while ordered[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best
