"""Logs, Sentry and the metrics endpoint."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from worker.settings.base import Part, choice

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")


class ObservabilitySettings(Part):
    """Where logs and errors go, in which form."""

    sentry_dsn: SecretStr | None = Field(
        None, description="Sentry DSN (optional; events are scrubbed of PII)"
    )
    sentry_environment: str = Field(
        "production", description="Sentry environment of every event (release: the version)"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="DEBUG, INFO, WARNING or ERROR"
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="text (key=value context) or json (one object per line: ts, level, logger, "
        "msg, context ids); applies to Celery's and libraries' records too",
    )
    metrics_timeout_s: float = Field(
        2.0,
        gt=0,
        le=30,
        description="Redis timeout of GET /metrics and 'idv-worker metrics' (503 / exit 1 after)",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> str:
        return choice(value, LOG_LEVELS)

    @field_validator("log_format", mode="before")
    @classmethod
    def _format(cls, value: Any) -> str:
        return choice(value, LOG_FORMATS)
