"""Onboarding: the CheckResult of a finished flow and the evidence copied from its links."""

from __future__ import annotations

from pydantic import Field

from worker.settings.base import Part


class OnboardingSettings(Part):
    """Which quota a callback uses, how long its evidence can be had, how long work is held."""

    onboarding_product: str = Field(
        "eKYC", description="product code whose CheckResult quota a callback uses by default"
    )
    evidence_window_s: float = Field(
        1800, gt=0, description="fresh evidence links can be had this long after completion"
    )
    onboarding_lease_s: float = Field(
        4.5,
        ge=1,
        description="per-transaction lease, renewed by the worker's heartbeat; a dead worker's "
        "run is taken over once it runs out (at least three IDV_HEARTBEAT_EVERY_S)",
    )


class EvidenceSettings(Part):
    """How an evidence video is streamed from the provider's link into the store."""

    evidence_part_size: int = Field(
        8 * 1024 * 1024, ge=5 * 1024 * 1024, description="multipart part size of evidence uploads"
    )
    evidence_chunk_size: int = Field(256 * 1024, ge=4096, description="download read size")
    evidence_max_links: int = Field(6, ge=1, description="links tried per video before giving up")
