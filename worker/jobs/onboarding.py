"""The onboarding message: one transaction to onboard, as the receiver enqueues it.

Ids and times only (no personal data); validated with pydantic when a worker takes it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from worker.jobs.kinds import KIND_EVIDENCE as KIND_EVIDENCE
from worker.jobs.kinds import KIND_ONBOARDING as KIND_ONBOARDING
from worker.keys import parse_transaction_id


def default_merchant_biz_id(transaction_id: str) -> str:
    """A stable ``MerchantBizId`` for a callback that carries none (32 hex characters).

    The provider does not check it against ``Initialize``; it only tags the call for
    troubleshooting, so a value derived from the transaction id is enough and repeatable.
    """
    return hashlib.sha256(transaction_id.encode()).hexdigest()[:32]


Mode = Literal["callback", "poll", "redrive", "archive"]
"""Why the job exists: a callback, the reconciler polling a flow with no callback yet, the
reconciler re-driving stalled work, or the archival sweep fetching a result before deletion."""


class OnboardingJob(BaseModel):
    """One transaction to onboard: the task message, ids and times only (no personal data).

    ``completed_at`` is epoch seconds (≈ the callback's receipt). Validated once, when it is
    built at the edge or taken from a message (``pydantic.ValidationError`` if malformed).
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    transaction_id: str
    product_code: str = Field(pattern=r"^[A-Za-z0-9_]{1,64}$")
    merchant_biz_id: str = Field(pattern=r"^[A-Za-z0-9]{1,32}$")
    completed_at: float = Field(gt=0, allow_inf_nan=False)
    window_s: float = Field(1800.0, gt=0, allow_inf_nan=False)
    claimed_passed: str | None = Field(None, pattern=r"^[YN]$")
    claimed_sub_code: str | None = Field(None, pattern=r"^[0-9]{1,16}$")
    mode: Mode = "callback"
    archive_by: float | None = Field(None, gt=0, allow_inf_nan=False)

    @property
    def archival(self) -> bool:
        """Run in the archival lane (no evidence window; deadline ``archive_by``)."""
        return self.mode == "archive"

    @field_validator("transaction_id")
    @classmethod
    def _transaction_id(cls, value: str) -> str:
        return parse_transaction_id(value, "transaction_id")

    @property
    def deadline(self) -> float:
        """Last moment a fresh evidence link can be had (completion + window)."""
        return self.completed_at + self.window_s

    @property
    def completed_datetime(self) -> datetime:
        return datetime.fromtimestamp(self.completed_at, UTC)

    def to_message(self) -> dict[str, Any]:
        """JSON-able task payload (no personal data)."""
        return self.model_dump()

    @classmethod
    def from_message(cls, data: Mapping[str, Any]) -> OnboardingJob:
        """Validate a task payload (``pydantic.ValidationError`` if malformed)."""
        return cls.model_validate(data)
