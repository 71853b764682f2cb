"""The events of a batch's state changes (``batch.completed`` / ``.paused`` / ``.cancelled``)."""

from __future__ import annotations

from typing import Literal

from worker.batch.model import ItemStatus
from worker.batch.store import BatchStore
from worker.jobs import EventType, Notice

Change = Literal["completed", "paused", "cancelled"]
_TYPES: dict[Change, EventType] = {
    "completed": "batch.completed",
    "paused": "batch.paused",
    "cancelled": "batch.cancelled",
}


def batch_notice(
    store: BatchStore, batch_id: str, change: Change, *, at: float, paused_by: str | None = None
) -> Notice:
    """The notice of ``batch_id``'s change at ``at`` (the time the transition was applied: a
    batch paused twice makes two events, one change announced twice one)."""
    progress = store.progress(batch_id)
    return Notice(
        type=_TYPES[change],
        subject=batch_id,
        version=f"{at:.6f}",
        at=at,
        data={
            "batch_id": batch_id,
            "state": change,
            "total": progress.total,
            "counts": {s.value: progress.counts.get(s, 0) for s in ItemStatus},
            "results_key": progress.results_key,
            "pause_reason": progress.pause_reason if change == "paused" else None,
            "paused_by": paused_by if change == "paused" else None,
        },
    )
