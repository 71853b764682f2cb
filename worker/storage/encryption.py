"""Server-side encryption: what the adapter asks for, what it checks, and the start-up probe.

Stores differ in what they do with ``x-amz-server-side-encryption``:

* **applied and reported** - AWS S3, MinIO with a KMS, moto: the object reports the algorithm
  on HEAD. ``IDV_S3_VERIFY_SSE=strict`` (the default) holds every object to that.
* **accepted silently** - s3rver (and stores that encrypt at rest without saying so): the
  write succeeds, HEAD reports nothing. Only ``reported`` or ``off`` can work there.
* **refused** - MinIO without a KMS answers 501 NotImplemented (minio/minio#6367): no write
  with SSE can ever succeed; configure a KMS or set ``IDV_S3_SSE=none``.

``probe_encryption`` writes one small object to find out which (``idv-worker doctor`` and
worker start-up), so a misconfigured store is one clear configuration error at start, not a
retry loop that downloads every video again and again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from worker.settings import PROBE_FOLDER
from worker.storage.errors import EncryptionNotApplied, StorageError

PROBE_PREFIX = PROBE_FOLDER + "probe/"
VERIFY_MODES = ("strict", "reported", "off")


class SseOutcome(StrEnum):
    """What the store did with the probe's encryption header."""

    APPLIED = "applied"  # reported on HEAD as configured
    SILENT = "accepted-silently"  # write accepted, HEAD reports no encryption
    OTHER = "reported-other"  # HEAD reports another algorithm than the one asked for
    REFUSED = "refused"  # the write with SSE fails, the same write without it succeeds
    DISABLED = "disabled"  # IDV_S3_SSE=none: nothing asked
    FAILED = "write-failed"  # the probe could not be written at all (bucket, credentials)


@dataclass(frozen=True, slots=True)
class EncryptionPolicy:
    """The encryption asked for (``sse``; None = none) and how each object is checked."""

    sse: str | None
    verify: str = "strict"

    def __post_init__(self) -> None:
        if self.verify not in VERIFY_MODES:
            raise ValueError(f"s3_verify_sse must be one of {', '.join(VERIFY_MODES)}")

    def accepts(self, reported: str | None) -> bool:
        """Whether an object reporting ``reported`` passes verification."""
        if self.sse is None or self.verify == "off" or reported == self.sse:
            return True
        return reported is None and self.verify == "reported"

    def check(self, key: str, reported: str | None) -> None:
        """Raise ``EncryptionNotApplied`` (a configuration error) if ``reported`` fails."""
        if not self.accepts(reported):
            assert self.sse is not None
            raise EncryptionNotApplied(key, self.sse, reported, self.fix(reported))

    def fix(self, reported: str | None) -> str:
        """The one line that tells an operator what to change."""
        if reported is None:
            return (
                f"the store accepts IDV_S3_SSE={self.sse} but does not report it; with "
                f"IDV_S3_VERIFY_SSE={self.verify} every write fails: set "
                "IDV_S3_VERIFY_SSE=reported if the store encrypts at rest, else IDV_S3_SSE=none"
            )
        return (
            f"the store applied {reported} instead of IDV_S3_SSE={self.sse}: set IDV_S3_SSE="
            f"{reported}, or IDV_S3_VERIFY_SSE=off to accept the store's own encryption"
        )


@dataclass(frozen=True, slots=True)
class SseProbe:
    """The probe's finding: ``ok`` under the configured verification, with the fix if not."""

    outcome: SseOutcome
    ok: bool
    detail: str
    fix: str = ""
    code: str | None = None

    def line(self) -> str:
        """One log line for an operator (names the variables to change)."""
        text = f"S3 encryption check: {self.outcome.value}: {self.detail}"
        return f"{text}; fix: {self.fix}" if self.fix else text


class ProbedStore(Protocol):
    """What the probe needs of a store (``S3ObjectStore`` has it; this module sits below it)."""

    @property
    def encryption(self) -> EncryptionPolicy: ...

    @property
    def key_prefix(self) -> str: ...

    def write_probe(self, key: str, *, encrypted: bool) -> str | None: ...

    def delete_quietly(self, key: str) -> None: ...


def probe_encryption(store: ProbedStore) -> SseProbe:
    """Write one probe object with the configured SSE, read what the store reports, delete it.

    Never raises a ``StorageError``: a store that cannot be written at all is outcome
    ``write-failed`` with its S3 code.
    """
    policy = store.encryption
    key = f"{store.key_prefix}{PROBE_PREFIX}{uuid.uuid4().hex}"
    try:
        reported = store.write_probe(key, encrypted=True)
    except StorageError as with_sse:
        if policy.sse is None:
            return _failed(with_sse)
        try:  # the same write without the header tells a refused SSE from a broken store
            store.write_probe(key, encrypted=False)
        except StorageError:
            return _failed(with_sse)
        finally:
            store.delete_quietly(key)
        return SseProbe(
            SseOutcome.REFUSED,
            ok=False,
            detail=f"the store refuses IDV_S3_SSE={policy.sse} ({with_sse.code}); writes "
            "without it succeed",
            fix=refused_fix(policy.sse),
            code=with_sse.code,
        )
    store.delete_quietly(key)
    if policy.sse is None:
        return SseProbe(
            SseOutcome.DISABLED, ok=True, detail="IDV_S3_SSE=none: objects are not encrypted"
        )
    if reported == policy.sse:
        return SseProbe(SseOutcome.APPLIED, ok=True, detail=f"{reported} applied and reported")
    outcome = SseOutcome.SILENT if reported is None else SseOutcome.OTHER
    detail = (
        f"{policy.sse} accepted, not reported"
        if reported is None
        else f"{policy.sse} asked, {reported} reported"
    )
    if policy.accepts(reported):
        return SseProbe(outcome, ok=True, detail=f"{detail} (IDV_S3_VERIFY_SSE={policy.verify})")
    return SseProbe(outcome, ok=False, detail=detail, fix=policy.fix(reported))


def _failed(exc: StorageError) -> SseProbe:
    return SseProbe(
        SseOutcome.FAILED,
        ok=False,
        detail=f"the probe object could not be written ({exc.operation}: {exc.code})",
        fix="check IDV_S3_BUCKET (idv-worker s3 ensure-bucket), IDV_S3_ENDPOINT_URL and the "
        "S3 credentials",
        code=exc.code,
    )


def refused_fix(sse: str) -> str:
    """The fix for a store that refuses ``sse`` outright."""
    if sse == "AES256":
        return (
            "configure a KMS on the store (MinIO: MINIO_KMS_KES_* or MINIO_KMS_SECRET_KEY) "
            "or set IDV_S3_SSE=none"
        )
    return "check IDV_S3_KMS_KEY_ID and the store's KMS, or set IDV_S3_SSE=AES256 or none"
