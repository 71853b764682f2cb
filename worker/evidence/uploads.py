"""The stale-upload sweep: multipart uploads left behind are aborted, so their parts stop
costing storage.

A worker killed mid-upload, or an abort that failed, leaves an upload open; its parts are kept
(and billed) until someone aborts it. ``UploadSweeper.sweep`` (run by beat every
``IDV_S3_UPLOAD_SWEEP_EVERY_S``) takes the uploads the registry knows it started
(``worker.stores.UploadRegistry``) that are older than ``IDV_S3_STALE_UPLOAD_AGE_S`` and aborts
them; for the same keys it also lists the store's open uploads with the exact key as prefix
(as MinIO needs) and aborts those older than the bound too (uploads the registry lost).

An abort that fails stays in the registry and is tried again on the next sweep. A store that
does not implement AbortMultipartUpload (s3rver 3.x) or ListMultipartUploads is a limitation,
not a failure: counted, said once per sweep in the log, and the upload is forgotten rather
than retried for ever. ``idv_s3_stale_uploads`` is what is left behind after the sweep.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from worker.observability import Metrics, NullMetrics, get_logger
from worker.storage import NotSupported, StorageError

if TYPE_CHECKING:
    from worker.storage import ObjectStore
    from worker.stores import TrackedUpload

log = get_logger("evidence.uploads")


class UploadIndex(Protocol):
    """The registry of uploads started (``worker.stores.UploadRegistry``)."""

    def older_than(self, cutoff: float, limit: int = 1000) -> list[TrackedUpload]: ...

    def started_at(self, key: str, upload_id: str) -> float | None: ...

    def forget(self, key: str, upload_id: str) -> None: ...


@dataclass(slots=True)
class SweepReport:
    """What one sweep did. ``left`` = stale uploads still open afterwards (failed or not
    abortable on this store)."""

    aborted: int = 0
    gone: int = 0  # the store no longer knew them (completed or aborted meanwhile)
    failed: int = 0
    unsupported: int = 0
    listed: int = 0  # aborted after being found by listing, not in the registry
    listing_supported: bool = True

    @property
    def left(self) -> int:
        return self.failed + self.unsupported


class UploadSweeper:
    """Aborts the multipart uploads older than ``older_than_s`` (see the module docstring)."""

    def __init__(
        self,
        objects: ObjectStore,
        index: UploadIndex,
        *,
        older_than_s: float,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._objects = objects
        self._index = index
        self._older_than_s = older_than_s
        self._metrics = metrics or NullMetrics()
        self._clock = clock

    def sweep(self) -> SweepReport:
        """One pass: abort what is stale, keep what failed for the next pass, report."""
        cutoff = self._clock() - self._older_than_s
        report = SweepReport()
        stale = self._index.older_than(cutoff)
        for upload in stale:
            outcome = self._abort(upload.key, upload.upload_id, report)
            if outcome != "failed":
                self._index.forget(upload.key, upload.upload_id)
        for key in sorted({upload.key for upload in stale}):
            if not self._sweep_listing(key, cutoff, report):
                break
        for outcome in ("aborted", "gone", "failed", "unsupported"):
            count = getattr(report, outcome)
            if count:
                self._metrics.incr("idv_s3_upload_aborts", count, outcome=outcome)
        self._metrics.gauge("idv_s3_stale_uploads", report.left)
        if report.unsupported:
            log.warning(
                "the S3 store does not implement AbortMultipartUpload: %d stale upload(s) "
                "left to the store's own expiry",
                report.unsupported,
            )
        if report.aborted or report.failed:
            log.info(
                "stale uploads: %d aborted, %d failed (retried next sweep)",
                report.aborted,
                report.failed,
            )
        return report

    def _abort(self, key: str, upload_id: str, report: SweepReport) -> str:
        try:
            outcome = "aborted" if self._objects.abort_upload(key, upload_id) else "gone"
        except NotSupported:
            outcome = "unsupported"
        except StorageError as exc:
            log.warning("could not abort a stale upload of %s: %s", key, exc.code)
            outcome = "failed"
        setattr(report, outcome, getattr(report, outcome) + 1)
        return outcome

    def _sweep_listing(self, key: str, cutoff: float, report: SweepReport) -> bool:
        """Abort the other stale uploads of ``key``; False once the store cannot list."""
        try:
            uploads = self._objects.list_uploads(key)
        except NotSupported:
            report.listing_supported = False
            return False
        except StorageError as exc:
            log.warning("could not list the uploads of %s: %s", key, exc.code)
            return True
        for upload in uploads:
            if self._index.started_at(upload.key, upload.upload_id) is not None:
                continue  # the registry's: live, or already handled above
            if upload.initiated.timestamp() > cutoff:
                continue
            if self._abort(upload.key, upload.upload_id, report) == "aborted":
                report.listed += 1
        return True
