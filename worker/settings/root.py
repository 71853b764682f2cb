"""The root: every part, built from the environment once, and the rules *between* parts.

A part's own rules live on the part (``Part.problems``); only rules that read two parts are
here. ``load_settings`` names every invalid variable in one ``SettingsError``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from worker.settings.base import CrossFieldError, Part, SettingsError, choice, env_name, num
from worker.settings.batch import BatchSettings, SourceSettings
from worker.settings.broker import BrokerSettings
from worker.settings.callbacks import CallbackSettings
from worker.settings.ledger import LedgerSettings
from worker.settings.observability import ObservabilitySettings
from worker.settings.onboarding import EvidenceSettings, OnboardingSettings
from worker.settings.provider import ProviderSettings
from worker.settings.quotas import QuotaSettings
from worker.settings.receiver import ReceiverSettings
from worker.settings.redis import RedisSettings
from worker.settings.results import ResultSettings
from worker.settings.storage import WORKER_FOLDERS, StorageSettings, key_folder
from worker.settings.subjects import SubjectSettings
from worker.settings.webhooks import WebhookSettings

MODES = ("production", "development")


class DeploymentSettings(Part):
    """What kind of deployment this is: how strict the start-up checks are."""

    mode: Literal["production", "development"] = Field(
        "production",
        description="production (refuse to start on a Redis reached without TLS or without "
        "authentication, unless IDV_REDIS_ALLOW_INSECURE, or that would lose data: no AOF/RDB "
        "persistence, or an evicting maxmemory-policy) or development (warn only)",
    )

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, value: Any) -> str:
        return choice(value, MODES)


@dataclass(frozen=True)
class Settings:
    """All configuration, one frozen part per capability (``settings.redis``, ``.batch`` ...)."""

    deployment: DeploymentSettings
    provider: ProviderSettings
    quotas: QuotaSettings
    redis: RedisSettings
    broker: BrokerSettings
    storage: StorageSettings
    onboarding: OnboardingSettings
    evidence: EvidenceSettings
    callbacks: CallbackSettings
    receiver: ReceiverSettings
    ledger: LedgerSettings
    batch: BatchSettings
    sources: SourceSettings
    webhooks: WebhookSettings
    results: ResultSettings
    subjects: SubjectSettings
    observability: ObservabilitySettings

    def parts(self) -> dict[str, Part]:
        """Every part by its name, in declaration order."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def problems(self) -> list[tuple[str, str]]:
        """Every rule this configuration breaks: each part's own, then those between parts."""
        out = [problem for part in self.parts().values() for problem in part.problems()]
        return out + _between_parts(self)

    def replace(self, **overrides: Any) -> Settings:
        """A copy with some variables changed (by field name: ``redis_url=...``), validated."""
        return _build(overrides, base=self)


def _between_parts(s: Settings) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    beat = s.ledger.heartbeat_every_s
    for part, name in ((s.batch, "batch_lease_s"), (s.onboarding, "onboarding_lease_s")):
        if getattr(part, name) < 3 * beat:
            out.append((
                env_name(name),
                f"must be at least three IDV_HEARTBEAT_EVERY_S ({num(3 * beat)}), else a live "
                "worker's lease may run out between two renewals and its work be taken over",
            ))  # fmt: skip
    if s.batch.batch_chunk_budget_s >= s.broker.task_time_limit_s:
        out.append((
            env_name("batch_chunk_budget_s"),
            f"must be below IDV_TASK_TIME_LIMIT_S ({s.broker.task_time_limit_s}): a chunk task "
            "hands its rest on before the hard limit kills it",
        ))  # fmt: skip
    if s.ledger.reconcile_after_s >= s.onboarding.evidence_window_s:
        out.append((
            env_name("reconcile_after_s"),
            f"must be below IDV_EVIDENCE_WINDOW_S ({num(s.onboarding.evidence_window_s)}): a flow "
            "without a callback must be polled while its evidence can still be had",
        ))  # fmt: skip
    if s.storage.s3_stale_upload_age_s <= s.broker.task_time_limit_s:
        out.append((
            env_name("s3_stale_upload_age_s"),
            f"must exceed IDV_TASK_TIME_LIMIT_S ({s.broker.task_time_limit_s}), else the sweep "
            "aborts uploads that a running task is still sending",
        ))  # fmt: skip
    imports = s.sources.batch_import_prefix
    written = [key_folder(s.storage.s3_prefix) + folder for folder in WORKER_FOLDERS]
    clash = [w for w in written if w.startswith(imports) or imports.startswith(w)]
    if clash:
        out.append((
            env_name("batch_import_prefix"),
            f"overlaps {clash[0]}, which the worker writes (IDV_S3_PREFIX "
            f"{s.storage.s3_prefix!r}): manifests would read stored evidence and results back",
        ))  # fmt: skip
    return out


PARTS: dict[str, type[Part]] = {
    f.name: f.type if isinstance(f.type, type) else globals()[str(f.type)]
    for f in dataclasses.fields(Settings)
}


def _owner_index() -> dict[str, str]:
    owners: dict[str, str] = {}
    for name, cls in PARTS.items():
        for field in cls.model_fields:
            owners[field] = name
    return owners


OWNERS = _owner_index()
"""Which part reads each field (``"redis_url" -> "redis"``)."""


def _variable(loc: tuple[Any, ...]) -> str:
    name = str(loc[0]) if loc else "?"
    return name.upper() if name.upper().startswith("IDV_") else env_name(name)


def _build(overrides: dict[str, Any], base: Settings | None = None) -> Settings:
    grouped: dict[str, dict[str, Any]] = {name: {} for name in PARTS}
    for field, value in overrides.items():
        owner = OWNERS.get(field)
        if owner is None:
            raise TypeError(f"no setting named {field!r}")
        grouped[owner][field] = value
    parts: dict[str, Part] = {}
    problems: list[tuple[str, str]] = []
    for name, cls in PARTS.items():
        values = grouped[name]
        if base is not None:
            current = getattr(base, name)
            if not values:
                parts[name] = current
                continue
            values = {**current.model_dump(), **values}
        try:
            parts[name] = cls(**values)
        except ValidationError as exc:
            for err in exc.errors():
                cause = (err.get("ctx") or {}).get("error")
                if isinstance(cause, CrossFieldError):
                    problems.extend(cause.problems)
                else:
                    problems.append((_variable(tuple(err["loc"])), err["msg"]))
    if problems:
        raise SettingsError(problems)
    settings = Settings(**parts)  # type: ignore[arg-type]
    rules = settings.problems()
    if rules:
        raise SettingsError(rules)
    return settings


def load_settings(**overrides: Any) -> Settings:
    """Every part from the environment (``overrides`` by field name win), validated.

    Raises ``SettingsError`` naming each invalid variable and each broken rule.
    """
    return _build(overrides)
