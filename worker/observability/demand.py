"""How many workers each lane can use now: ``idv_lane_desired_workers{lane}`` (pure arithmetic).

A lane needs enough processes to finish its work before its deadline, but no more than its
quota keeps busy: a process holds an item for ``t`` seconds of service (provider latency,
downloads, S3; limiter waits excluded), so ``quota × t / calls_per_item`` processes already
make every call the quota allows, and one more only waits on the limiter::

    needed = ceil(work × t / drain_s)                 (work = backlog + in flight)
    useful = ceil(quota × t / calls_per_item)         (none for a lane without provider calls)
    processes = max(1, min(needed, useful))  if work else 0
    workers   = ceil(processes / concurrency)         (pods of IDV_WORKER_CONCURRENCY processes)

``ServiceTime`` turns two readings of cumulative histograms (task seconds, items, limiter wait)
into ``t``: the service time of the items finished between the readings, smoothed, with a
default until the first item is seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DESIRED_WORKERS = "idv_lane_desired_workers"
DEMAND_LANES = ("realtime", "webhooks", "archival", "bulk")


@dataclass(frozen=True, slots=True)
class LaneLoad:
    """What one lane has to do and what it may use, at one moment."""

    lane: str
    backlog: int  # items waiting: queued messages plus work the stores hold (rows, due entries)
    in_flight: int  # items held by a process now
    seconds_per_item: float  # service time of one item, limiter waits excluded
    drain_s: float  # how soon the work should be done (the lane's deadline)
    quota: float | None  # calls per second the lane may use; None: no provider calls
    concurrency: int = 1  # processes per worker pod
    calls_per_item: float = 1.0

    def __post_init__(self) -> None:
        if self.backlog < 0 or self.in_flight < 0:
            raise ValueError("backlog and in_flight must be >= 0")
        if not (self.seconds_per_item > 0 and self.drain_s > 0 and self.calls_per_item > 0):
            raise ValueError("seconds_per_item, drain_s and calls_per_item must be > 0")
        if self.quota is not None and not self.quota >= 0:
            raise ValueError("quota must be >= 0")
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")


@dataclass(frozen=True, slots=True)
class Demand:
    """The answer for one lane; ``workers`` is the gauge's value."""

    lane: str
    needed: int  # processes that meet the deadline
    useful: int | None  # processes the quota keeps busy (None: unbounded)
    processes: int
    workers: int


def _ceil(x: float) -> int:
    # Rounding noise (3.0000000000000004) must not ask for one more process.
    return math.ceil(round(x, 9))


def desired(load: LaneLoad) -> Demand:
    """Processes and pods ``load`` can use now (see the module docstring)."""
    work = load.backlog + load.in_flight
    needed = _ceil(work * load.seconds_per_item / load.drain_s)
    useful = (
        None
        if load.quota is None
        else _ceil(load.quota * load.seconds_per_item / load.calls_per_item)
    )
    if work == 0 or useful == 0:
        processes = 0
    else:
        processes = max(1, needed if useful is None else min(needed, useful))
    return Demand(load.lane, needed, useful, processes, _ceil(processes / load.concurrency))


@dataclass(frozen=True, slots=True)
class Reading:
    """Cumulative counters of one lane at one scrape."""

    busy_s: float  # sum of task (or item) durations
    items: float  # items finished
    wait_s: float = 0.0  # sum of limiter waits
    waits: float = 0.0  # limiter grants (one per call)


class ServiceTime:
    """Seconds of service per item from successive ``Reading``s (exponentially smoothed)."""

    def __init__(self, default_s: float, *, smoothing: float = 0.5, floor_s: float = 0.01) -> None:
        if not (default_s > 0 and 0 < smoothing <= 1 and floor_s > 0):
            raise ValueError("default_s, floor_s > 0 and 0 < smoothing <= 1")
        self.value = default_s
        self.smoothing = smoothing
        self.floor_s = floor_s
        self._last: Reading | None = None
        self._seen = False

    def update(self, reading: Reading, calls_per_item: float = 1.0) -> float:
        """Fold in the items finished since the last reading; the current estimate.

        A task's seconds are counted when it ends, its items as they finish (a chunk's rows):
        a reading is used only once both moved, so rows never count without their seconds.
        """
        last = self._last
        if last is None or reading.items < last.items or reading.busy_s < last.busy_s:
            self._last = reading  # first reading, or the counters were reset
            return self.value
        items = reading.items - last.items
        if items <= 0 or reading.busy_s <= last.busy_s:
            return self.value  # wait until the items' task seconds arrive
        self._last = reading
        waits = reading.waits - last.waits
        wait_per_call = (reading.wait_s - last.wait_s) / waits if waits > 0 else 0.0
        busy = (reading.busy_s - last.busy_s) / items - max(0.0, wait_per_call) * calls_per_item
        sample = max(self.floor_s, busy)
        if self._seen:
            self.value += self.smoothing * (sample - self.value)
        else:
            self.value, self._seen = sample, True
        return self.value
