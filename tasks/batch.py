"""Thin tasks of the batch flow (queue ``idv.bulk``): chunk, watchdog, finalize.

Messages carry a batch id and a chunk number; the logic lives in ``worker.batch``. A chunk's
lease is renewed by the worker's heartbeat and indexed by expiry, and a chunk's delayed retry
is a due time in the same index (``worker.batch.takeover``): a chunk held by a worker that died,
or whose retry message died with it, runs elsewhere within seconds, never after the broker's
visibility timeout. A worker that starts also re-arms the watchdog of every running batch.
"""

from __future__ import annotations

import time
from typing import Any

import redis
from celery import current_app, shared_task, signals
from celery.exceptions import Retry

from tasks.base import IdvTask, retry_delay
from worker.batch import BatchState, ChunkOutcome, RetryChunk
from worker.jobs import KIND_CHUNK, KIND_FINALIZE, KIND_WATCHDOG
from worker.observability import get_logger
from worker.queues import TASK_CHUNK, TASK_FINALIZE, TASK_WATCHDOG
from worker.wiring import Cli, services

log = get_logger("tasks.batch")

STARTUP_SWEEP_LIMIT = 200


class BatchTask(IdvTask):
    """Base of the batch tasks."""

    abstract = True
    flow = "batch"


@shared_task(bind=True, base=BatchTask, name=TASK_CHUNK)
def process_chunk(self: BatchTask, batch_id: str, chunk_no: int) -> str:
    """Process one chunk of a batch (see ``worker.batch.service``)."""
    ref = f"{batch_id}:{chunk_no}"
    payload = {"batch": batch_id, "chunk": int(chunk_no)}
    node = self.node
    give_up = self.request.retries >= self.max_retries
    try:
        try:
            outcome = node.batch_service.process_chunk(batch_id, int(chunk_no), give_up=give_up)
        except RetryChunk as exc:
            self.handle_error(exc.cause, kind=KIND_CHUNK, item_id=ref, payload=payload)
        except Exception as exc:
            self.handle_error(exc, kind=KIND_CHUNK, item_id=ref, payload=payload)
    except Retry as retry:
        # The delayed message is a hint: the retry's due time lives in the takeover index, so
        # one that dies with this node runs a beat after it was due, not an hour later.
        due = time.time() + retry_delay(retry) + node.batch_service.grace_s
        node.heartbeat.index.schedule(f"chunk:{batch_id}:{int(chunk_no)}", due)
        raise
    if outcome is ChunkOutcome.COMPLETED:
        # Cheap when armed already; re-arms a watchdog whose message died with a worker.
        node.batch_control.arm_watchdog(batch_id)
    return outcome.value


@shared_task(bind=True, base=BatchTask, name=TASK_WATCHDOG)
def watchdog(self: BatchTask, batch_id: str) -> float | None:
    """Re-enqueue chunks left behind by dead workers; re-arms itself while the batch runs."""
    control = self.node.batch_control
    try:
        delay = control.watchdog(batch_id)
    except Exception as exc:
        self.handle_error(exc, kind=KIND_WATCHDOG, item_id=batch_id, payload={"batch": batch_id})
    if delay is not None and control.due is not None:
        control.due.schedule(f"wd:{batch_id}", time.time() + delay)  # a due time, no countdown
    elif delay is not None:
        control.enqueuer.watchdog(batch_id, delay)
    return delay


@shared_task(bind=True, base=BatchTask, name=TASK_FINALIZE)
def finalize(self: BatchTask, batch_id: str) -> str | None:
    """Export the results of a complete batch to S3 and mark it completed."""
    try:
        return self.node.batch_control.finalize(batch_id)
    except Exception as exc:
        self.handle_error(exc, kind=KIND_FINALIZE, item_id=batch_id, payload={"batch": batch_id})


@signals.worker_ready.connect
def _sweep(sender: Any = None, **_: Any) -> None:
    """On worker start, re-arm the watchdog of every running batch (and re-enqueue lost chunks).

    A watchdog message delayed with a countdown is held by the worker that reserved it; if that
    worker was killed, the message only comes back after the broker's visibility timeout.
    """
    app = getattr(sender, "app", None) or current_app
    # The parent process's own clients, closed before the pool forks.
    cli = Cli(app.conf.idv_settings, app=app)
    try:
        store = services.build_batch_store(cli.core)
        control = services.build_batch_control(cli.core, store, cli.sender)
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
        cli.close()
