"""The onboarding message: one transaction to onboard, as the receiver enqueues it.

Ids and times only (no personal data); validated with pydantic when a worker takes it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from worker.keys import validate_id

KIND_ONBOARDING = "onboarding"
"""Dead-letter and lease kind of the fetch/write-back of one transaction."""
KIND_EVIDENCE = "evidence"
"""Dead-letter kind of evidence that could not be archived in time (lost)."""


def default_merchant_biz_id(transaction_id: str) -> str:
    """A stable ``MerchantBizId`` for a callback that carries none (32 hex characters).

    The provider does not check it against ``Initialize``; it only tags the call for
    troubleshooting, so a value derived from the transaction id is enough and repeatable.
    """
    return hashlib.sha256(transaction_id.encode()).hexdigest()[:32]


class OnboardingMessage(BaseModel):
    """The task message (ids and times only; validated when a worker takes it)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    transaction_id: str = Field(min_length=1, max_length=128)
    product_code: str = Field(pattern=r"^[A-Za-z0-9_]{1,64}$")
    merchant_biz_id: str = Field(pattern=r"^[A-Za-z0-9]{1,32}$")
    completed_at: float = Field(gt=0)
    window_s: float = Field(gt=0)
    claimed_passed: str | None = Field(None, pattern=r"^[YN]$")
    claimed_sub_code: str | None = Field(None, pattern=r"^[0-9]{1,16}$")


@dataclass(frozen=True, slots=True)
class OnboardingJob:
    """One transaction to onboard; ``completed_at`` is epoch seconds (≈ the callback's receipt)."""

    transaction_id: str
    product_code: str
    merchant_biz_id: str
    completed_at: float
    window_s: float = 1800.0
    claimed_passed: str | None = None
    claimed_sub_code: str | None = None

    @property
    def deadline(self) -> float:
        """Last moment a fresh evidence link can be had (completion + window)."""
        return self.completed_at + self.window_s

    @property
    def completed_datetime(self) -> datetime:
        return datetime.fromtimestamp(self.completed_at, UTC)

    def to_message(self) -> dict[str, Any]:
        """JSON-able task payload (no personal data)."""
        return OnboardingMessage(
            transaction_id=self.transaction_id,
            product_code=self.product_code,
            merchant_biz_id=self.merchant_biz_id,
            completed_at=self.completed_at,
            window_s=self.window_s,
            claimed_passed=self.claimed_passed,
            claimed_sub_code=self.claimed_sub_code,
        ).model_dump()

    @classmethod
    def from_message(cls, data: Mapping[str, Any]) -> OnboardingJob:
        """Validate a task payload (``pydantic.ValidationError`` if malformed)."""
        msg = OnboardingMessage.model_validate(data)
        validate_id(msg.transaction_id, "transaction_id")
        return cls(**msg.model_dump())
