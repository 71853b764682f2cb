"""The transaction ledger: the truth of what every flow still needs.

A reconciler and an archival sweep re-drive whatever is overdue; Celery messages are hints.
"""

from __future__ import annotations

from worker.ledger.forecast import (
    DAY,
    HOUR,
    LEFT_BUCKETS,
    Forecast,
    forecast,
)
from worker.ledger.model import (
    FINAL_STATES,
    LANE_NAMES,
    OPEN_STATES,
    CallbackVerdict,
    Claim,
    LedgerEntry,
    Queue,
    State,
)
from worker.ledger.reads import LedgerReads
from worker.ledger.reconciler import (
    Reconciler,
    SweepReport,
)
from worker.ledger.start import (
    FlowStarter,
    InitializeApi,
    StartedFlow,
    callback_url_for,
)
from worker.ledger.store import (
    Ledger,
    Reporter,
)

__all__ = [
    "DAY",
    "FINAL_STATES",
    "HOUR",
    "LANE_NAMES",
    "LEFT_BUCKETS",
    "OPEN_STATES",
    "CallbackVerdict",
    "Claim",
    "FlowStarter",
    "Forecast",
    "InitializeApi",
    "Ledger",
    "LedgerEntry",
    "LedgerReads",
    "Queue",
    "Reconciler",
    "Reporter",
    "StartedFlow",
    "State",
    "SweepReport",
    "callback_url_for",
    "forecast",
]
