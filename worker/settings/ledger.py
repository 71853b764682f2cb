"""The ledger: when overdue work is re-driven, when flows are abandoned, archival's schedule."""

from __future__ import annotations

from pydantic import Field

from worker.settings.base import Part, env_name, num


class LedgerSettings(Part):
    """The reconciler's and the archival sweep's clocks."""

    reconcile_every_s: float = Field(
        30, gt=0, le=3600, description="how often beat runs the reconciler over overdue work"
    )
    heartbeat_every_s: float = Field(
        1.5,
        gt=0,
        le=60,
        description="how often each worker process renews the leases it holds and re-drives "
        "work whose lease ran out or whose delayed retry is overdue",
    )
    reconcile_after_s: float = Field(
        120,
        ge=5,
        description="a started flow with no callback is polled with CheckResult after this long "
        "(then every this long); a run with no progress is re-driven after it",
    )
    flow_lifetime_s: float = Field(
        86400, ge=10, description="a started flow never completed within this is abandoned"
    )
    provider_retention_s: float = Field(
        30 * 86400, ge=60, description="the provider deletes a result this long after the flow"
    )
    archive_every_s: float = Field(300, gt=0, description="how often beat runs the archival sweep")
    archive_margin_s: float = Field(
        86400,
        ge=0,
        description="archival's deadline is the provider's deletion minus this margin",
    )
    archive_batch: int = Field(
        500, ge=1, le=100_000, description="archival jobs queued per sweep (and in the queue)"
    )
    archive_realtime_reserve: float = Field(
        0.5,
        ge=0,
        lt=1,
        description="share of the CheckResult quota the archival forecast leaves to realtime work",
    )
    ledger_grace_s: int = Field(
        7 * 86400, ge=60, description="a finished transaction's ledger entry is kept this long"
    )

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        retention = num(self.provider_retention_s)
        if self.archive_margin_s >= self.provider_retention_s:
            out.append((
                env_name("archive_margin_s"),
                f"must be below IDV_PROVIDER_RETENTION_S ({retention}), else "
                "archival's deadline lies before the flow",
            ))  # fmt: skip
        if self.flow_lifetime_s >= self.provider_retention_s:
            out.append((
                env_name("flow_lifetime_s"),
                f"must be below IDV_PROVIDER_RETENTION_S ({retention}): the "
                "provider deletes a flow's result before it would be abandoned",
            ))  # fmt: skip
        return out
