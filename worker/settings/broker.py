"""The Celery broker and the time limits of a message and a task run."""

from __future__ import annotations

from pydantic import Field, field_validator

from worker.queues import MAX_COUNTDOWN_S
from worker.settings.base import Part, env_name, num
from worker.settings.redis import SENTINEL_URL


class BrokerSettings(Part):
    """Where Celery messages go and how long one may stay unacknowledged."""

    broker_url: str | None = Field(None, description="Celery broker; defaults to IDV_REDIS_URL")
    broker_visibility_timeout_s: int = Field(
        3600,
        ge=60,
        description="seconds before an unacknowledged message is redelivered (must exceed "
        "IDV_TASK_TIME_LIMIT_S plus the longest countdown, 300 s)",
    )
    task_time_limit_s: int = Field(1800, ge=60, description="hard time limit of one task run")

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str | None) -> str | None:
        if value and value.startswith("sentinel://"):
            raise ValueError(SENTINEL_URL + " (and leave IDV_BROKER_URL unset)")
        return value or None

    def problems(self) -> list[tuple[str, str]]:
        longest = self.task_time_limit_s + MAX_COUNTDOWN_S
        if self.broker_visibility_timeout_s > longest:
            return []
        return [(
            env_name("broker_visibility_timeout_s"),
            f"must exceed IDV_TASK_TIME_LIMIT_S ({self.task_time_limit_s}) plus the "
            f"longest countdown ({MAX_COUNTDOWN_S:.0f}) = {num(longest)}, else a message "
            "still waiting or running is delivered to a second worker",
        )]  # fmt: skip
