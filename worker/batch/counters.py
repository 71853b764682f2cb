"""A batch's progress, read from its ``meta`` and ``n`` hashes (``worker.batch.layout``).

``n`` holds a counter per final status, one per provider sub code (``sub:<code>``), and what
the call rate is measured from: the number of provider calls (``calls``), the times of the first
and last call, and a ring of per-second call counts over the last ``RATE_WINDOW_S`` seconds
(``w:<second mod window>`` = ``"<second>:<count>"``, written by ``lua/finish.lua``).

The rate shown is calls per second over the last minute while the batch runs, and over the
whole run (first to last call) once it has stopped: a finished batch shows the rate it ran at,
a young one the rate it runs at now, not an average still warming up.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping

from worker.batch.model import BatchState, ItemStatus, Progress
from worker.redisio import optional_text

RATE_WINDOW_S = 60  # a running batch's rate is measured over this many seconds
_COUNTER_FIELDS: dict[str, ItemStatus] = {
    s.value: s for s in ItemStatus if s is not ItemStatus.PENDING
}


def _f(value: bytes | str | None, default: float = 0.0) -> float:
    text = optional_text(value)
    return float(text) if text not in (None, "") else default


def decode_progress(
    batch_id: str,
    meta_raw: Mapping[bytes, bytes],
    n_raw: Mapping[bytes, bytes],
    chunks_done: int,
    quota: float = 0.0,
    now: float | None = None,
) -> Progress:
    """The ``Progress`` of a batch from its two hashes and its count of complete chunks.

    ``now`` (epoch seconds, default the current time) is the moment the rate is measured at.
    """
    meta = {a.decode(): b.decode("utf-8") for a, b in meta_raw.items()}
    n = {a.decode(): b.decode() for a, b in n_raw.items()}
    counts: dict[ItemStatus, int] = {
        status: int(n.get(name, "0")) for name, status in _COUNTER_FIELDS.items()
    }
    subs = {name[4:]: int(v) for name, v in n.items() if name.startswith("sub:") and int(v) > 0}
    submitted = meta.get("submitted") == "1"
    total = int(meta.get("total_rows" if submitted else "submitted_rows", "0") or 0)
    state = BatchState(meta.get("state", "running"))
    running = state is BatchState.RUNNING
    rate = call_rate(n, running=running, now=time.time() if now is None else now)
    return Progress(
        batch_id=batch_id,
        state=state,
        submitted=submitted,
        total=total,
        counts=counts,
        sub_codes=subs,
        created_at=_f(meta.get("created_at")),
        updated_at=_f(meta.get("updated_at")),
        first_at=_f(n.get("first_at")) or None,
        last_at=_f(n.get("last_at")) or None,
        rate=rate,
        quota=quota,
        pause_reason=meta.get("pause_reason") or None,
        results_key=meta.get("results_key") or None,
        manifest=meta.get("manifest") or None,
        chunks=int(meta.get("total_chunks" if submitted else "submitted_chunks", "0") or 0),
        chunks_done=chunks_done,
    )


def call_rate(n: Mapping[str, str], *, running: bool, now: float) -> float:
    """Provider calls per second from a batch's ``n`` hash (decoded to text).

    Running: the calls of the last ``RATE_WINDOW_S`` seconds (the current one included) over
    the time they span, from the window's start or the first call if later. Otherwise: over
    the whole run, first to last call. ``n`` calls evenly spaced ``d`` apart span ``(n-1)·d``,
    so the call that opens the measured span is not counted.
    """
    calls = int(n.get("calls", "0") or 0)
    first = _f(n.get("first_at"))
    if calls < 2 or not first:
        return 0.0
    if not running:
        span = _f(n.get("last_at")) - first
        return (calls - 1) / span if span > 0 else 0.0
    second = math.floor(now)
    start = float(second - (RATE_WINDOW_S - 1))
    counted = sum(count for at, count in _window(n) if start <= at <= second)
    if first >= start:
        start, counted = first, counted - 1
    span = now - start
    return counted / span if span > 0 and counted > 0 else 0.0


def _window(n: Mapping[str, str]) -> Iterator[tuple[int, int]]:
    """(second, calls) of each slot of the ring."""
    for name, value in n.items():
        if not name.startswith("w:"):
            continue
        second, _, count = value.partition(":")
        if second.isdigit() and count.isdigit():
            yield int(second), int(count)
