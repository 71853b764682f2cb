"""The batch objects of one worker process, built on first use from its ``Runtime``.

The batch flow uses its own provider client (same settings, same limiter) because its
transport claims items as requests leave (``worker.batch.calls``); everything else comes
from the process's ``Runtime``. Nothing is built at import time; ``close_batch_worker`` runs
on process shutdown.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from worker.batch.calls import batch_client
from worker.batch.control import BatchControl
from worker.batch.enqueue import CeleryEnqueuer
from worker.batch.service import BatchService
from worker.batch.sources import ImageReader
from worker.batch.store import BatchStore
from worker.runtime import Runtime, get_runtime

if TYPE_CHECKING:
    from celery import Celery


@dataclass
class BatchWorker:
    """Service and control of this process, with what they own."""

    runtime: Runtime
    service: BatchService
    control: BatchControl
    pid: int

    def close(self) -> None:
        """Close what the batch flow built itself (the runtime closes the rest)."""
        self.service.client.close()
        self.service.reader.close()


_lock = threading.Lock()
_current: BatchWorker | None = None


def build(runtime: Runtime, app: Celery) -> BatchWorker:
    """Assemble the batch objects on top of ``runtime``."""
    settings = runtime.settings
    store = BatchStore(runtime.redis, settings)
    enqueuer = CeleryEnqueuer(app)
    reader = ImageReader(s3_client=lambda: runtime.objects.client, timeout=settings.read_timeout)
    service = BatchService(
        store=store,
        client=batch_client(settings, runtime.limiter),
        reader=reader,
        results=runtime.results,
        enqueuer=enqueuer,
        settings=settings,
        metrics=runtime.metrics,
    )
    control = BatchControl(
        store,
        enqueuer,
        settings,
        results=runtime.results,
        objects=runtime.objects,
        metrics=runtime.metrics,
    )
    return BatchWorker(runtime, service, control, os.getpid())


def batch_worker(app: Celery) -> BatchWorker:
    """This process's ``BatchWorker`` (rebuilt after a fork or a new runtime)."""
    global _current
    runtime = get_runtime()
    with _lock:
        if _current is None or _current.pid != os.getpid() or _current.runtime is not runtime:
            _current = build(runtime, app)
        return _current


def close_batch_worker() -> None:
    """Close this process's batch objects (worker process shutdown)."""
    global _current
    with _lock:
        if _current is not None and _current.pid == os.getpid():
            _current.close()
        _current = None
