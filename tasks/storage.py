"""Storage upkeep (archival lane): ``idv.archival.sweep_uploads``, run by beat.

Thin: ask the runtime for the ``UploadSweeper`` and run one pass. A pass that fails (Redis or
the store unreachable) is logged and counted; the next scheduled pass is its retry, so the task
itself is never retried nor dead-lettered.
"""

from __future__ import annotations

from typing import ClassVar

from celery import shared_task

from tasks.base import IdvTask
from worker.backoff import STORAGE_SWEEP_TASK, RetryPolicy
from worker.errors import error_code
from worker.observability import get_logger
from worker.queues import TASK_SWEEP_UPLOADS

log = get_logger("tasks.storage")


class StorageTask(IdvTask):
    """Base of storage upkeep tasks."""

    abstract = True
    flow: ClassVar[str] = "storage"
    retry_policy: ClassVar[RetryPolicy] = STORAGE_SWEEP_TASK


@shared_task(bind=True, base=StorageTask, name=TASK_SWEEP_UPLOADS)
def sweep_uploads(self: StorageTask) -> dict[str, int]:
    """Abort the multipart uploads older than ``IDV_S3_STALE_UPLOAD_AGE_S``."""
    try:
        report = self.node.upload_sweeper.sweep()
    except Exception as exc:
        log.warning("stale-upload sweep failed (next run retries): %s", error_code(exc))
        raise
    return {
        "aborted": report.aborted,
        "gone": report.gone,
        "failed": report.failed,
        "unsupported": report.unsupported,
        "left": report.left,
    }
