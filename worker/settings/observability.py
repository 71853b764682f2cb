"""Logs, Sentry and the metrics endpoint."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import NoDecode

from worker.settings.base import Part, choice, parse_mapping

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")
SCALED_LANES = ("realtime", "webhooks", "archival", "bulk")
# Processes per worker pod (the --concurrency of deploy/k8s/workers.yaml), and how soon each
# lane's work should be done (realtime: evidence links expire; bulk: as fast as its quota).
DEFAULT_CONCURRENCY = {"realtime": 8, "webhooks": 4, "archival": 4, "bulk": 8}
DEFAULT_DRAIN_S = {"realtime": 60.0, "webhooks": 60.0, "archival": 3600.0, "bulk": 300.0}


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

    worker_concurrency: Annotated[dict[str, int], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_CONCURRENCY),
        description="processes per worker pod by lane, e.g. realtime=8,bulk=4 (merged over "
        "realtime=8,webhooks=4,archival=4,bulk=8): the unit of idv_lane_desired_workers",
    )
    scale_drain_s: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_DRAIN_S),
        description="seconds each lane's backlog should take at most, e.g. bulk=600 (merged "
        "over realtime=60,webhooks=60,archival=3600,bulk=300): idv_lane_desired_workers asks "
        "for enough workers to meet it, capped by the quota",
    )

    @field_validator("worker_concurrency", "scale_drain_s", mode="before")
    @classmethod
    def _lane_mapping(cls, value: Any) -> Any:
        return parse_mapping(value, "LANE=NUMBER")

    @field_validator("worker_concurrency", "scale_drain_s", mode="after")
    @classmethod
    def _lanes(cls, value: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        unknown = sorted(set(value) - set(SCALED_LANES))
        if unknown:
            raise ValueError(f"unknown lanes {unknown}; lanes are {', '.join(SCALED_LANES)}")
        if any(not v > 0 for v in value.values()):
            raise ValueError("every value must be > 0")
        default = (
            DEFAULT_CONCURRENCY if info.field_name == "worker_concurrency" else DEFAULT_DRAIN_S
        )
        return {**default, **value}

    @field_validator("log_level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> str:
        return choice(value, LOG_LEVELS)

    @field_validator("log_format", mode="before")
    @classmethod
    def _format(cls, value: Any) -> str:
        return choice(value, LOG_FORMATS)
