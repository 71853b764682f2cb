"""The S3 API: where objects go, how they are encrypted, how the store is kept tidy."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from worker.settings.base import Part, choice, env_name

S3_SSE_MODES = ("AES256", "aws:kms", "none")
S3_VERIFY_SSE_MODES = ("strict", "reported", "off")

# The folders the worker writes below IDV_S3_PREFIX: ``worker.keys.ObjectKeys`` builds its keys
# from the first three, the encryption probe writes under the last. A manifest must never read
# them back (``IDV_BATCH_IMPORT_PREFIX``).
EVIDENCE_FOLDER = "evidence/"
RESULTS_FOLDER = "results/"
BATCHES_FOLDER = "batches/"
PROBE_FOLDER = "_idv/"
WORKER_FOLDERS = (EVIDENCE_FOLDER, RESULTS_FOLDER, BATCHES_FOLDER, PROBE_FOLDER)


def key_folder(prefix: str) -> str:
    """``prefix`` as a key folder: no leading slash, one trailing slash (``""`` stays empty)."""
    stripped = prefix.strip("/")
    return stripped + "/" if stripped else ""


class StorageSettings(Part):
    """The bucket of evidence, result documents and batch results."""

    s3_endpoint_url: str | None = Field(
        None, description="S3 API endpoint (MinIO etc.); unset = AWS"
    )
    s3_region: str = Field("us-east-1", description="S3 region")
    s3_bucket: str = Field(
        "idv-evidence", description="bucket for evidence, result documents and batch results"
    )
    s3_access_key_id: str | None = Field(
        None, description="S3 access key (unset = the default AWS credential chain)"
    )
    s3_secret_access_key: SecretStr | None = Field(None, description="S3 secret key")
    s3_kms_key_id: str | None = Field(None, description="KMS key id when IDV_S3_SSE=aws:kms")
    s3_prefix: str = Field("", description="prefix of every object key")
    s3_upload_concurrency: int = Field(
        3,
        ge=1,
        le=64,
        description="parts of one multipart upload sent at once; each upload holds up to "
        "(this + 1) parts in memory",
    )
    s3_sse: Literal["AES256", "aws:kms", "none"] = Field(
        "AES256", description="server-side encryption: AES256, aws:kms or none"
    )
    s3_verify_sse: Literal["strict", "reported", "off"] = Field(
        "strict",
        description="per-object SSE check: strict (the store must report IDV_S3_SSE: AWS, "
        "MinIO with a KMS), reported (check only what the store reports: stores that accept "
        "SSE silently) or off",
    )
    s3_upload_sweep_every_s: int = Field(
        3600, ge=60, description="how often beat sweeps multipart uploads left behind"
    )
    s3_stale_upload_age_s: int = Field(
        86400,
        ge=600,
        description="a multipart upload started longer ago than this is aborted by the sweep",
    )
    evidence_retention_days: int = Field(
        400,
        ge=1,
        description="days evidence and result documents are kept; the S3 lifecycle rule of "
        "'idv-worker retention --print'",
    )

    @field_validator("s3_sse", mode="before")
    @classmethod
    def _sse(cls, value: Any) -> str:
        return choice(value, S3_SSE_MODES)

    @field_validator("s3_verify_sse", mode="before")
    @classmethod
    def _verify_sse(cls, value: Any) -> str:
        return choice(value, S3_VERIFY_SSE_MODES)

    def problems(self) -> list[tuple[str, str]]:
        if self.s3_kms_key_id and self.s3_sse != "aws:kms":
            return [(
                env_name("s3_kms_key_id"),
                f"is set but IDV_S3_SSE is {self.s3_sse}: set IDV_S3_SSE=aws:kms or unset it",
            )]  # fmt: skip
        return []
