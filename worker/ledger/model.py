"""The ledger's plain objects: transaction states, one entry, a claim, a callback's verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal


class State(StrEnum):
    """Where a transaction stands; each transition is timestamped in its entry.

    ``initialized → completed → result_stored → evidence_stored | evidence_lost → archived``,
    plus ``abandoned`` (never completed within the flow's lifetime) and ``expired`` (the
    provider deleted it before it was archived: lost, loudly).
    """

    INITIALIZED = "initialized"
    COMPLETED = "completed"
    RESULT_STORED = "result_stored"
    EVIDENCE_STORED = "evidence_stored"
    EVIDENCE_LOST = "evidence_lost"
    ARCHIVED = "archived"
    ABANDONED = "abandoned"
    EXPIRED = "expired"

    @property
    def final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({State.ARCHIVED, State.ABANDONED, State.EXPIRED})
# States whose work is still to be done, in the order of the flow.
OPEN_STATES = tuple(s for s in State if s not in FINAL_STATES)

Queue = Literal["rt", "ar"]
"""Which due index a transaction waits in: ``rt`` realtime work (polls, onboarding runs within
the evidence window), ``ar`` archival (fetching a full result before the provider deletes it)."""
# The lane each ledger queue feeds, as operators read it (``ledger show``).
LANE_NAMES: dict[str, str] = {"rt": "realtime", "ar": "archival"}


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One transaction as the ledger knows it (epoch seconds; None where unknown)."""

    transaction_id: str
    state: State
    product_code: str
    merchant_biz_id: str
    source: str
    created_at: float
    completed_at: float | None
    deletes_at: float
    due_at: float | None
    queue: str | None
    attempts: int
    reason: str | None
    history: dict[State, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """JSON-able form (``idv-worker ledger show``); ids and times only."""
        return {
            "transaction_id": self.transaction_id,
            "state": self.state.value,
            "product_code": self.product_code,
            "merchant_biz_id": self.merchant_biz_id,
            "source": self.source,
            "created_at": self.created_at,
            "completed_at": self.completed_at,
            "deletes_at": self.deletes_at,
            "due_at": self.due_at,
            "queue": self.queue,
            "attempts": self.attempts,
            "reason": self.reason,
            "history": {state.value: at for state, at in self.history.items()},
        }


@dataclass(frozen=True, slots=True)
class Claim:
    """One attempt at a due transaction, taken by a sweep (see ``Ledger.claim``)."""

    transaction_id: str
    state: State
    product_code: str
    merchant_biz_id: str
    created_at: float
    completed_at: float | None
    deletes_at: float
    attempts: int


@dataclass(frozen=True, slots=True)
class CallbackVerdict:
    """What the ledger says of a callback: ``accepted`` (enqueue), ``duplicate``, ``unknown``
    (not taken), or ``full`` (too many entries only callbacks vouch for; not taken)."""

    status: Literal["accepted", "duplicate", "unknown", "full"]
    product_code: str | None = None
    merchant_biz_id: str | None = None
    completed_at: float | None = None
