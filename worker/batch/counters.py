"""A batch's progress, read from its ``meta`` and ``n`` hashes (``worker.batch.layout``).

``n`` holds a counter per final status, one per provider sub code (``sub:<code>``), the times
of the first and last call, and the call rate as an exponentially decaying average (``rate``
as of ``rate_t``), decayed here to now.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from worker.batch.model import BatchState, ItemStatus, Progress
from worker.redisio import optional_text

RATE_TAU_S = 30.0  # time constant of the call-rate average shown in status
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
) -> Progress:
    """The ``Progress`` of a batch from its two hashes and its count of complete chunks."""
    meta = {a.decode(): b.decode("utf-8") for a, b in meta_raw.items()}
    n = {a.decode(): b.decode() for a, b in n_raw.items()}
    counts: dict[ItemStatus, int] = {
        status: int(n.get(name, "0")) for name, status in _COUNTER_FIELDS.items()
    }
    subs = {name[4:]: int(v) for name, v in n.items() if name.startswith("sub:") and int(v) > 0}
    submitted = meta.get("submitted") == "1"
    total = int(meta.get("total_rows" if submitted else "submitted_rows", "0") or 0)
    rate = _f(n.get("rate"))
    if rate:
        elapsed = max(0.0, time.time() - _f(n.get("rate_t")))
        rate *= pow(2.718281828459045, -elapsed / RATE_TAU_S)
    return Progress(
        batch_id=batch_id,
        state=BatchState(meta.get("state", "running")),
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
