"""Result records in Redis and the stream downstream systems read."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from worker.settings.base import Part


class ResultSettings(Part):
    """How long result records live and how long the results stream may grow."""

    result_ttl_s: int = Field(
        35 * 86400,
        ge=60,
        # IDV_RESULT_TTL is the documented name; IDV_RESULT_TTL_S follows the field name.
        validation_alias=AliasChoices("result_ttl_s", "IDV_RESULT_TTL", "IDV_RESULT_TTL_S"),
        description="seconds a result record stays in Redis (env IDV_RESULT_TTL); default 35 "
        "days, past the provider's 30-day retention",
    )
    results_stream_maxlen: int = Field(
        100_000,
        ge=1,
        description="approximate length cap of the results stream (XADD MAXLEN ~); a consumer "
        "group that falls further behind loses the oldest events",
    )
