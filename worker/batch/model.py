"""Plain objects shared by the batch modules: states, item statuses, progress, stored rows."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from worker.batch.rows import ItemSpec


class BatchState(StrEnum):
    """Lifecycle of a batch (``running`` also while the manifest is still being submitted)."""

    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    COMPLETED = "completed"


class ItemStatus(StrEnum):
    """Outcome of one row; stored as one byte per row (``code``) in Redis."""

    PENDING = "pending"
    DONE = "done"  # the provider answered (Passed Y or N, sub codes 200/211/212/213)
    FAILED = "failed"  # the provider refused the item (400/401 codes) or retries ran out
    INVALID = "invalid"  # rejected before any call: bad row or unreadable / unfit image
    UNCERTAIN = "uncertain"  # a call may have reached the provider but no answer was kept
    DUPLICATE = "duplicate"  # same item as an earlier row: processed once, there

    @property
    def code(self) -> bytes:
        """The byte stored in the status string (NUL for pending)."""
        return _CODES[self]

    @classmethod
    def from_code(cls, code: bytes | str) -> ItemStatus:
        """The status of a stored byte (an empty or NUL byte is pending)."""
        raw = code.encode("latin-1") if isinstance(code, str) else code
        return _BY_CODE.get(raw[:1] or b"\0", cls.PENDING)


_CODES: dict[ItemStatus, bytes] = {
    ItemStatus.PENDING: b"\0",
    ItemStatus.DONE: b"d",
    ItemStatus.FAILED: b"f",
    ItemStatus.INVALID: b"i",
    ItemStatus.UNCERTAIN: b"u",
    ItemStatus.DUPLICATE: b"x",
}
_BY_CODE = {v: k for k, v in _CODES.items()}
TERMINAL = (
    ItemStatus.DONE,
    ItemStatus.FAILED,
    ItemStatus.INVALID,
    ItemStatus.UNCERTAIN,
    ItemStatus.DUPLICATE,
)


@dataclass(frozen=True, slots=True)
class StoredRow:
    """One row of a chunk: its position, and the spec when it passed the submit-time checks."""

    seq: int  # 0-based position in the manifest; the row number is seq + 1
    line: int
    spec: ItemSpec | None

    @property
    def row(self) -> int:
        """1-based row number as reported to users."""
        return self.seq + 1


def encode_chunk(rows: list[tuple[int, ItemSpec | None]]) -> bytes:
    """Compress ``(line, spec)`` rows into a chunk blob (a few dozen bytes per row).

    Each row is a JSON array ``[line, source, doc_type, card_side, flags, threshold,
    merchant_user_id, item_id]`` with trailing nulls dropped (``flags``: 1 spoof, 2 quality);
    rows invalid at submission keep only ``[line]``. Derived item ids are not stored: they
    are recomputed from the same fields.
    """
    out: list[list[Any]] = []
    for line, spec in rows:
        if spec is None:
            out.append([line])
            continue
        flags = (1 if spec.spoof else 0) | (2 if spec.face_quality else 0)
        item: list[Any] = [
            line,
            spec.source,
            spec.doc_type,
            spec.card_side,
            flags,
            spec.id_threshold,
            spec.merchant_user_id,
            spec.explicit_id,
        ]
        while item[-1] is None:
            item.pop()
        out.append(item)
    text = json.dumps(out, ensure_ascii=False, separators=(",", ":"))
    return zlib.compress(text.encode("utf-8"), 6)


def decode_chunk(blob: bytes, first_seq: int) -> list[StoredRow]:
    """The rows of a chunk blob; ``first_seq`` is the position of its first row."""
    rows: list[StoredRow] = []
    for offset, item in enumerate(json.loads(zlib.decompress(blob))):
        seq = first_seq + offset
        if len(item) == 1:
            rows.append(StoredRow(seq, int(item[0]), None))
            continue
        padded = [*item, None, None, None, None, None, None, None][:8]
        line, source, doc_type, side, flags, threshold, user, explicit = padded
        flags = int(flags or 0)
        spec = ItemSpec(
            source=source,
            doc_type=doc_type,
            card_side=side,
            spoof=bool(flags & 1),
            face_quality=bool(flags & 2),
            id_threshold=threshold,
            merchant_user_id=user,
            explicit_id=explicit,
        )
        rows.append(StoredRow(seq, int(line), spec))
    return rows


@dataclass(slots=True)
class Progress:
    """A batch's counters and state at one moment (what ``batch status`` shows)."""

    batch_id: str
    state: BatchState
    submitted: bool
    total: int
    counts: dict[ItemStatus, int]
    sub_codes: dict[str, int] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    first_at: float | None = None
    last_at: float | None = None
    # provider calls per second: over the last minute while running, else over the whole run
    rate: float = 0.0
    quota: float = 0.0
    pause_reason: str | None = None
    results_key: str | None = None
    manifest: str | None = None
    chunks: int = 0
    chunks_done: int = 0

    @property
    def processed(self) -> int:
        """Rows with a final status (anything but pending)."""
        return sum(self.counts.get(s, 0) for s in TERMINAL)

    @property
    def remaining(self) -> int:
        """Rows still to process (for a cancelled batch: rows that never will be)."""
        return max(0, self.total - self.processed)

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the configured quota (the best the batch can do), if running."""
        if self.state is not BatchState.RUNNING or self.quota <= 0:
            return None
        return self.remaining / self.quota

    @property
    def eta_observed_s(self) -> float | None:
        """Seconds left at the rate measured lately, if any calls were made recently."""
        if self.state is not BatchState.RUNNING or self.rate <= 1e-6:
            return None
        return self.remaining / self.rate

    def as_dict(self) -> dict[str, Any]:
        """JSON-able view (``batch status --json``)."""
        return {
            "batch_id": self.batch_id,
            "state": self.state.value,
            "submitted": self.submitted,
            "total": self.total,
            **{s.value: self.counts.get(s, 0) for s in TERMINAL},
            "remaining": self.remaining,
            "sub_codes": dict(sorted(self.sub_codes.items())),
            "rate_per_s": round(self.rate, 3),
            "quota_per_s": self.quota,
            "eta_s": _round(self.eta_s),
            "eta_observed_s": _round(self.eta_observed_s),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "pause_reason": self.pause_reason,
            "results_key": self.results_key,
            "manifest": self.manifest,
            "chunks": self.chunks,
            "chunks_done": self.chunks_done,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
