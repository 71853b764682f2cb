"""Doctor checks of the S3 bucket: it exists, it encrypts, it keeps no copies erasure cannot
reach (a warning)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.commands.checks.result import CheckResult

if TYPE_CHECKING:
    from worker.wiring import Cli


def check_s3_bucket(runtime: Cli) -> CheckResult:
    """The bucket exists and the credentials may see it."""
    from worker.storage import StorageError

    name, bucket = "s3 bucket", runtime.settings.storage.s3_bucket
    try:
        exists = runtime.objects.bucket_exists()
    except StorageError as exc:
        return CheckResult(
            name, False, f"HeadBucket {bucket}: {exc.code}",
            "check IDV_S3_ENDPOINT_URL, IDV_S3_ACCESS_KEY_ID / IDV_S3_SECRET_ACCESS_KEY and "
            "the bucket policy",
        )  # fmt: skip
    if not exists:
        return CheckResult(
            name, False, f"bucket {bucket} does not exist",
            "run `idv-worker s3 ensure-bucket` (or set IDV_S3_BUCKET)",
        )  # fmt: skip
    return CheckResult(name, True, f"bucket {bucket} exists")


def check_s3_encryption(runtime: Cli) -> CheckResult:
    """One probe object written with IDV_S3_SSE: applied and reported, accepted silently or
    refused (then deleted)."""
    from worker.storage import probe_encryption

    probe = probe_encryption(runtime.objects)
    return CheckResult(
        "s3 encryption", probe.ok, f"{probe.outcome.value}: {probe.detail}", probe.fix
    )


def check_s3_copies(runtime: Cli) -> CheckResult:
    """Warn about bucket settings that keep copies of personal data past an erasure."""
    from worker.storage import StorageError

    name = "s3 copies"
    try:
        copies = runtime.objects.bucket_copies()
    except StorageError as exc:
        return CheckResult(
            name, False, f"bucket settings not readable: {exc.operation} {exc.code}",
            "allow s3:GetBucketVersioning, GetLifecycleConfiguration, "
            "GetBucketObjectLockConfiguration and GetReplicationConfiguration",
        )  # fmt: skip
    warnings = copies.warnings()
    if warnings:
        return CheckResult(
            name, True, "; ".join(warnings),
            "add a lifecycle rule with NoncurrentVersionExpiration (`idv-worker retention "
            "--print`); erasure reports versions it cannot remove and replicas it cannot reach",
            warning=True,
        )  # fmt: skip
    versioning = copies.versioning or "off"
    return CheckResult(name, True, f"versioning {versioning}; no Object Lock, no replication")
