"""The limiter's settings: quota overrides per product and API, margins, waits.

The provider's published quotas are provider data (``worker.cloudauth.DEFAULT_QUOTAS``); these
variables only override them. ``worker.ratelimit.QuotaTable`` joins the two.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import NoDecode

from worker.settings.base import Part, parse_mapping


class QuotaSettings(Part):
    """How much of each quota the limiter hands out, and how long a call may wait for it."""

    quotas: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=dict,
        description="QPS per product code, e.g. ID_OCR_MIN=10,eKYC=10 (merged over the "
        "provider's published quotas)",
    )
    api_quotas: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=dict, description="per-API overrides, e.g. ID_OCR_MIN:DocOcrV2=8"
    )
    quota_safety_margin: float = Field(
        0.015,
        ge=0,
        lt=0.5,
        description="fraction of each quota left unused as a jitter budget: where a bucket "
        "starts before it learns its own (worker.ratelimit.policies)",
    )
    quota_margin_learning: bool = Field(
        True, description="learn each bucket's margin from throttles and send gaps"
    )
    quota_margin_floor: float = Field(
        0.002, ge=0, lt=0.5, description="the least margin a bucket learns"
    )
    quota_margin_ceiling: float = Field(
        0.10, ge=0, lt=0.5, description="the most margin a bucket learns"
    )
    quota_burst: int = Field(
        1, ge=1, description="calls that may start back to back (1 = evenly spaced)"
    )
    limiter_max_wait_s: float = Field(
        60.0,
        gt=0,
        le=600,
        description="longest a call waits in-process for its limiter slot before giving up "
        "(MaxWaitExceeded: the task retries later)",
    )

    @field_validator("quotas", "api_quotas", mode="before")
    @classmethod
    def _mapping(cls, value: Any) -> Any:
        return parse_mapping(value, "PRODUCT=QPS")

    @field_validator("quotas", "api_quotas", mode="after")
    @classmethod
    def _positive(cls, value: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        for key, qps in value.items():
            if info.field_name == "api_quotas" and ":" not in key:
                raise ValueError(f"per-API quota key must be PRODUCT:Api, got {key!r}")
            if not math.isfinite(qps) or qps <= 0:
                raise ValueError(f"quota for {key} must be a finite number > 0, got {qps}")
        return value

    @field_validator("quota_margin_ceiling", mode="after")
    @classmethod
    def _margin_bounds(cls, value: float, info: ValidationInfo) -> float:
        floor = info.data.get("quota_margin_floor")
        if floor is not None and value < floor:
            raise ValueError(f"must be >= IDV_QUOTA_MARGIN_FLOOR ({floor})")
        return value
