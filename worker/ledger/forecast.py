"""Planning, said early: does the pending archival work fit the quota before its deadlines?

Every open transaction needs (at least) one ``CheckResult`` before the provider deletes it.
Walking the deletion times in order, the work due by time *t* must fit the calls that can be
made by *t* at the quota left over by realtime work
(``quota × (1 − IDV_ARCHIVE_REALTIME_RESERVE)``); what does not fit will expire.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from worker.ledger.model import FINAL_STATES

if TYPE_CHECKING:
    from worker.ledger.store import Ledger

HOUR = 3600.0
DAY = 86400.0
# Age buckets of open transactions, by time left before the provider deletes them.
LEFT_BUCKETS = (("<1h", 0.0, HOUR), ("1h-1d", HOUR, DAY), ("1d-7d", DAY, 7 * DAY),
                ("7d-30d", 7 * DAY, 30 * DAY), (">30d", 30 * DAY, float("inf")))  # fmt: skip


@dataclass(frozen=True, slots=True)
class Forecast:
    """The archival plan at ``now`` (see the module docstring)."""

    now: float
    counts: dict[str, int]
    pending: int
    at_risk: int
    deleting_in: dict[str, int]
    quota_qps: float
    available_qps: float
    needs_s: float
    will_expire: int

    @property
    def fits(self) -> bool:
        return self.will_expire == 0

    def summary(self) -> str:
        """One line for people: "12000 pending; needs 40 min ...; fits"."""
        need = _duration(self.needs_s)
        head = (
            f"{self.pending} pending; needs {need} of CheckResult quota at "
            f"{self.available_qps:g} QPS (of {self.quota_qps:g})"
        )
        if self.fits:
            return f"{head}; fits"
        return f"{head}; does not fit: {self.will_expire} transactions will expire"

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "fits": self.fits, "summary": self.summary()}


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * HOUR:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / HOUR:.1f} h"


def forecast(ledger: Ledger, *, now: float, quota_qps: float, reserve: float) -> Forecast:
    """The plan for the open transactions of ``ledger`` (one Redis round trip per hour step)."""
    counts = ledger.counts()
    pending = sum(n for state, n in counts.items() if state not in FINAL_STATES)
    available = max(quota_qps * (1.0 - reserve), 1e-9)
    # Cumulative deletions by the end of each hour, over the retention horizon (+ overdue).
    horizon_h = int(ledger.settings.provider_retention_s // HOUR) + 2
    pipe = ledger.redis.pipeline(transaction=False)
    pipe.zcount(ledger.deletes_key, "-inf", f"({now}")
    for hour in range(1, horizon_h + 1):
        pipe.zcount(ledger.deletes_key, now + (hour - 1) * HOUR, f"({now + hour * HOUR}")
    for _, low, high in LEFT_BUCKETS:
        pipe.zcount(
            ledger.deletes_key, now + low, f"({now + high}" if high != float("inf") else "+inf"
        )
    replies = [int(r) for r in pipe.execute()]
    overdue, per_hour = replies[0], replies[1 : horizon_h + 1]
    buckets = replies[horizon_h + 1 :]
    will_expire = overdue
    cumulative = 0
    for hour, count in enumerate(per_hour, start=1):
        cumulative += count
        will_expire = max(will_expire, overdue + cumulative - int(hour * HOUR * available))
    return Forecast(
        now=now,
        counts={state.value: n for state, n in counts.items()},
        pending=pending,
        at_risk=overdue + sum(per_hour[:24]),
        deleting_in={name: n for (name, _, _), n in zip(LEFT_BUCKETS, buckets, strict=True)},
        quota_qps=quota_qps,
        available_qps=round(available, 6),
        needs_s=pending / available,
        will_expire=max(0, will_expire),
    )
