"""Thin tasks of the batch flow (queue ``idv.bulk``): chunk, watchdog, finalize.

Messages carry a batch id and a chunk number; the logic lives in ``worker.batch``. A worker
that starts re-arms the watchdog of every running batch, so chunks held by a worker that died
are picked up again after their lease expires, without waiting for the broker's visibility
timeout.
"""

from __future__ import annotations

from typing import Any

import redis
from celery import current_app, shared_task, signals

from tasks.base import IdvTask
from worker.batch import BatchState, CeleryEnqueuer, ChunkOutcome, RetryChunk
from worker.observability import get_logger
from worker.queues import TASK_CHUNK, TASK_FINALIZE, TASK_WATCHDOG
from worker.runtime import Runtime
from worker.settings import Settings
from worker.stores import DeadLetter, DeadLetterStore

log = get_logger("tasks.batch")

STARTUP_SWEEP_LIMIT = 200
KIND_CHUNK = "batch-chunk"
KIND_WATCHDOG = "batch-watchdog"
KIND_FINALIZE = "batch-finalize"


class BatchTask(IdvTask):
    """Base of the batch tasks."""

    abstract = True
    flow = "batch"


@shared_task(bind=True, base=BatchTask, name=TASK_CHUNK)
def process_chunk(self: BatchTask, batch_id: str, chunk_no: int) -> str:
    """Process one chunk of a batch (see ``worker.batch.service``)."""
    ref = f"{batch_id}:{chunk_no}"
    payload = {"batch": batch_id, "chunk": int(chunk_no)}
    runtime = self.runtime
    give_up = self.request.retries >= self.max_retries
    try:
        outcome = runtime.batch_service.process_chunk(batch_id, int(chunk_no), give_up=give_up)
    except RetryChunk as exc:
        self.handle_error(exc.cause, kind=KIND_CHUNK, item_id=ref, payload=payload)
    except Exception as exc:
        self.handle_error(exc, kind=KIND_CHUNK, item_id=ref, payload=payload)
    if outcome is ChunkOutcome.COMPLETED:
        # Cheap when armed already; re-arms a watchdog whose message died with a worker.
        runtime.batch_control.arm_watchdog(batch_id)
    return outcome.value


@shared_task(bind=True, base=BatchTask, name=TASK_WATCHDOG)
def watchdog(self: BatchTask, batch_id: str) -> float | None:
    """Re-enqueue chunks left behind by dead workers; re-arms itself while the batch runs."""
    control = self.runtime.batch_control
    try:
        delay = control.watchdog(batch_id)
    except Exception as exc:
        self.handle_error(exc, kind=KIND_WATCHDOG, item_id=batch_id, payload={"batch": batch_id})
    if delay is not None:
        control.enqueuer.watchdog(batch_id, delay)
    return delay


@shared_task(bind=True, base=BatchTask, name=TASK_FINALIZE)
def finalize(self: BatchTask, batch_id: str) -> str | None:
    """Export the results of a complete batch to S3 and mark it completed."""
    try:
        return self.runtime.batch_control.finalize(batch_id)
    except Exception as exc:
        self.handle_error(exc, kind=KIND_FINALIZE, item_id=batch_id, payload={"batch": batch_id})


def register_retries(store: DeadLetterStore, settings: Settings) -> None:
    """``idv-worker dlq retry`` for the batch kinds: re-send the chunk / watchdog / export."""
    from worker.app import create_app

    enqueuer = CeleryEnqueuer(create_app(settings))

    def batch_of(entry: DeadLetter) -> str:
        batch_id = entry.payload.get("batch")
        if not isinstance(batch_id, str):
            raise ValueError(f"dead letter {entry.kind}/{entry.id} names no batch")
        return batch_id

    def chunk(entry: DeadLetter) -> None:
        number = entry.payload.get("chunk")
        if not isinstance(number, int):
            raise ValueError(f"dead letter {entry.kind}/{entry.id} names no chunk")
        enqueuer.chunks(batch_of(entry), [number])

    store.register_retry(KIND_CHUNK, chunk)
    store.register_retry(KIND_WATCHDOG, lambda e: enqueuer.watchdog(batch_of(e), 0.0))
    store.register_retry(KIND_FINALIZE, lambda e: enqueuer.finalize(batch_of(e)))


@signals.worker_ready.connect
def _sweep(sender: Any = None, **_: Any) -> None:
    """On worker start, re-arm the watchdog of every running batch (and re-enqueue lost chunks).

    A watchdog message delayed with a countdown is held by the worker that reserved it; if that
    worker was killed, the message only comes back after the broker's visibility timeout.
    """
    app = getattr(sender, "app", None) or current_app
    # The parent process's own runtime, closed before the pool forks.
    runtime = Runtime(app.conf.idv_settings, app=app)
    try:
        store, control = runtime.batch_store, runtime.batch_control
        for batch_id in store.list_ids(STARTUP_SWEEP_LIMIT):
            try:
                if store.state(batch_id) is BatchState.RUNNING:
                    control.kick(batch_id)
                    control.arm_watchdog(batch_id, force=True)
            except Exception:  # one bad batch must not stop the worker from starting
                log.warning("startup sweep failed for batch %s", batch_id, exc_info=True)
    except redis.RedisError:
        log.warning("startup sweep skipped: Redis unavailable", exc_info=True)
    finally:
        runtime.close()
