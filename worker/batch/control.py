"""Batch lifecycle: pause, resume, cancel, retry of failed rows, watchdog and finalisation.

* ``pause`` stops every worker before its next call (the claim script refuses calls of a
  paused batch, even for items already waiting for a limiter slot); ``resume`` re-enqueues the
  chunks the pause left behind. ``cancel`` is final.
* ``retry_failed`` puts ``failed`` rows (and, only when asked, ``uncertain`` ones: their call
  may already have been billed) back to pending and re-enqueues their chunks.
* The **watchdog** runs every ``batch_watchdog_interval_s`` while a batch runs: it re-enqueues
  chunks whose worker died (lease expired, no message waiting) and triggers finalisation.
  Its rounds are due times in the takeover index (``worker.batch.takeover``), run by the
  workers' heartbeats; workers re-arm it on startup and as chunks complete.
* **Finalisation** writes the results as JSONL to S3 (``batches/<id>/results.jsonl``), marks
  the batch ``completed`` and announces it on the results stream.

A batch that becomes ``completed``, ``paused`` or ``cancelled`` is announced to the webhook
(``batch.*`` events, ``worker.batch.notices``) through the sender, once per change.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from worker.batch.export import iter_results, jsonl_blocks
from worker.batch.model import BatchState, ItemStatus, Progress
from worker.batch.notices import Change, batch_notice
from worker.batch.store import BatchNotFound, BatchStore
from worker.errors import IdvError
from worker.jobs import WorkSender
from worker.keys import ObjectKeys
from worker.observability import Metrics, NullMetrics
from worker.ratelimit import QuotaTable, UnknownProduct
from worker.settings import BatchSettings
from worker.storage import ObjectStore
from worker.stores import DueIndex, ResultStore

log = logging.getLogger("idv.batch")

_FINALIZE_LOCK_S = 900.0


def _refusal(batch_id: str, op: str, state: str) -> IdvError:
    """Why ``op`` was not applied: no such batch (no state at all), or its state."""
    return BatchStateError(batch_id, op, state) if state else BatchNotFound(batch_id)


class BatchStateError(IdvError, RuntimeError):
    """The operation does not apply to the batch in its current state."""

    def __init__(self, batch_id: str, op: str, state: str) -> None:
        self.batch_id = batch_id
        self.op = op
        self.state = state
        super().__init__(f"cannot {op} batch {batch_id}: it is {state}")


@dataclass(frozen=True, slots=True)
class RetryResult:
    """Rows put back to pending and chunk messages sent by ``retry_failed``."""

    batch_id: str
    reset_rows: int
    chunks: int
    enqueued: int
    state: BatchState


class BatchControl:
    """State changes of batches; needs ``results``/``objects`` only to finalise."""

    def __init__(
        self,
        store: BatchStore,
        enqueuer: WorkSender,
        settings: BatchSettings,
        *,
        quotas: QuotaTable,
        object_keys: ObjectKeys,
        results: ResultStore | None = None,
        objects: ObjectStore | None = None,
        metrics: Metrics | None = None,
        due: DueIndex | None = None,
    ) -> None:
        """``due``: the takeover index, where the watchdog's rounds are due times (without
        it, a delayed Celery message)."""
        self.due = due
        self.store = store
        self.enqueuer = enqueuer
        self.settings = settings
        self.quotas = quotas
        self.object_keys = object_keys
        self.results = results
        self.objects = objects
        self.metrics: Metrics = metrics if metrics is not None else NullMetrics()

    def quota(self, batch_id: str) -> float:
        """The configured QPS of the batch's product for DocOcrV2."""
        product = self.store.meta(batch_id).get("product_code") or self.settings.batch_product_code
        try:
            return self.quotas.quota_for(product, "DocOcrV2")
        except UnknownProduct:
            return 0.0

    def progress(self, batch_id: str) -> Progress:
        """The batch's progress, with the ETA computed from the configured quota."""
        return self.store.progress(batch_id, self.quota(batch_id))

    # ------------------------------------------------------------------ operator actions

    def pause(self, batch_id: str, reason: str = "paused by operator") -> Progress:
        """Stop calls of a running batch (rows in flight finish, nothing new is sent)."""
        at = self.store.clock()
        applied, state = self.store.transition(
            batch_id, "pause", reason=reason, by="operator", at=at
        )
        if not applied and state != BatchState.PAUSED.value:
            raise _refusal(batch_id, "pause", state)
        if applied:
            self._announce(batch_id, "paused", at, paused_by="operator")
        return self.progress(batch_id)

    def resume(self, batch_id: str, *, force: bool = False) -> Progress:
        """Resume a paused batch and re-enqueue the chunks it left behind (see ``kick``)."""
        applied, state = self.store.transition(batch_id, "resume")
        if not applied and state != BatchState.RUNNING.value:
            raise _refusal(batch_id, "resume", state)
        self.kick(batch_id, force=force)
        return self.progress(batch_id)

    def cancel(self, batch_id: str) -> Progress:
        """Stop a batch for good; rows not yet sent never will be."""
        at = self.store.clock()
        applied, state = self.store.transition(batch_id, "cancel", at=at)
        if not applied and state != BatchState.CANCELLED.value:
            raise _refusal(batch_id, "cancel", state)
        self.store.drop_marker(batch_id, "wd")
        if applied:
            self._announce(batch_id, "cancelled", at)
        return self.progress(batch_id)

    def retry_failed(self, batch_id: str, *, include_uncertain: bool = False) -> RetryResult:
        """Put failed rows (and uncertain ones if asked) back to pending and enqueue them.

        Uncertain rows may already have been processed - and billed - by the provider: re-send
        them only after checking the provider's records.
        """
        state = self.store.state(batch_id)
        if state is BatchState.CANCELLED:
            raise BatchStateError(batch_id, "retry", state.value)
        if state is BatchState.COMPLETED:
            self.store.transition(batch_id, "reopen")
        statuses = [ItemStatus.FAILED]
        if include_uncertain:
            statuses.append(ItemStatus.UNCERTAIN)
        reset, chunks = self.store.reset(batch_id, statuses)
        enqueued = 0
        if self.store.state(batch_id) is BatchState.RUNNING:
            enqueued = self._send(batch_id, chunks)
            self.arm_watchdog(batch_id)
        else:
            # Paused: ``resume`` will pick these chunks up.
            self.store.unmark_queued(batch_id, chunks)
        if reset and include_uncertain:
            log.warning("batch %s: uncertain rows re-sent on request", batch_id)
        return RetryResult(batch_id, reset, len(chunks), enqueued, self.store.state(batch_id))

    # ------------------------------------------------------------------ upkeep

    def kick(self, batch_id: str, *, force: bool = False) -> int:
        """Re-enqueue left-behind chunks of a running batch and arm its watchdog.

        ``force`` includes chunks marked as waiting in the broker (a lost or dead-lettered
        message); a duplicate message finds its rows done and costs nothing.
        """
        if self.store.state(batch_id) is not BatchState.RUNNING:
            return 0
        sent = self._send(batch_id, self.store.requeue_candidates(batch_id, force=force))
        progress = self.store.progress(batch_id)
        if progress.submitted and progress.chunks_done >= progress.chunks:
            self.enqueuer.finalize(batch_id)
        self.arm_watchdog(batch_id)
        return sent

    def sweep_stalled(self, *, now: float, limit: int = 200) -> list[str]:
        """Re-drive running batches that made no progress for a while (beat): a backstop.

        Chunk messages are Celery messages: a node killed while holding them (unacknowledged)
        keeps them until the broker's visibility timeout; the takeover index catches those a
        worker held or delayed, this catches the rest. A batch with no call for
        ``2 × IDV_BATCH_LEASE_S`` (at least 60 s) has every incomplete chunk
        that no live lease holds sent again, and its watchdog re-armed; a duplicate message
        finds its rows done (or claimed) and costs nothing. Returns the batches re-driven.
        """
        stalled_after = max(2 * self.settings.batch_lease_s, 60.0)
        kicked = []
        for batch_id in self.store.list_ids(limit):
            try:
                progress = self.store.progress(batch_id)
            except BatchNotFound:
                continue
            if progress.state is not BatchState.RUNNING or not progress.submitted:
                continue
            last = max(progress.last_at or 0.0, progress.updated_at, progress.created_at)
            if now - last < stalled_after:
                continue
            sent = self.kick(batch_id, force=True)
            self.arm_watchdog(batch_id, force=True)
            log.warning("batch %s: no progress for %.0f s; %d chunk(s) sent again",
                        batch_id, now - last, sent)  # fmt: skip
            kicked.append(batch_id)
        return kicked

    def arm_watchdog(self, batch_id: str, *, force: bool = False) -> bool:
        """Enqueue the watchdog unless one is armed (``force``: enqueue anyway)."""
        interval = self.settings.batch_watchdog_interval_s
        if self.store.arm_marker(batch_id, "wd", 3 * interval) or force:
            if self.due is not None:
                self.due.schedule(f"wd:{batch_id}", self.store.clock() + interval)
            else:
                self.enqueuer.watchdog(batch_id, interval)
            return True
        return False

    def watchdog(self, batch_id: str) -> float | None:
        """One watchdog round; returns the delay before the next one, or None to stop."""
        try:
            state = self.store.state(batch_id)
        except BatchNotFound:
            return None
        if state is not BatchState.RUNNING:
            self.store.drop_marker(batch_id, "wd")
            return None
        interval = self.settings.batch_watchdog_interval_s
        if not self.store.arm_marker(batch_id, "wdrun", interval / 2):
            # Another chain ran less than half an interval ago (a starting worker arms one
            # unconditionally): this copy ends here, so chains never pile up.
            return None
        self.store.drop_marker(batch_id, "wd")
        self.store.arm_marker(batch_id, "wd", 3 * interval)
        chunks = self.store.requeue_candidates(batch_id)
        if chunks:
            log.info("batch %s: re-enqueued %d left-behind chunks", batch_id, len(chunks))
            self._send(batch_id, chunks)
        progress = self.store.progress(batch_id)
        if progress.submitted and progress.chunks_done >= progress.chunks:
            self.enqueuer.finalize(batch_id)
        return interval

    def finalize(self, batch_id: str) -> str | None:
        """Export the results to S3 and mark the batch completed; returns the object key."""
        if self.results is None or self.objects is None:
            raise RuntimeError("finalize needs the result store and the object store")
        if not self.store.arm_marker(batch_id, "fin", _FINALIZE_LOCK_S):
            return None
        try:
            progress = self.store.progress(batch_id)
            if (
                progress.state is not BatchState.RUNNING
                or not progress.submitted
                or progress.chunks_done < progress.chunks
            ):
                return None
            key = self.object_keys.batch_results(batch_id)
            stored = self.objects.put_stream(
                key,
                jsonl_blocks(
                    iter_results(self.store, self.results, batch_id, objects=self.objects)
                ),
                content_type="application/x-ndjson",
            )
            self.store.set_meta(
                batch_id,
                results_key=key,
                exported_at=f"{time.time():.6f}",
                results_sha256=(stored.sha256 or ""),
            )
            at = self.store.clock()
            applied, _ = self.store.transition(batch_id, "complete", at=at)
            if applied:
                self._announce(batch_id, "completed", at)
                done = self.store.progress(batch_id)
                self.results.publish(
                    {
                        "type": "batch",
                        "kind": "batch",
                        "id": batch_id,
                        "status": BatchState.COMPLETED.value,
                        "results_key": key,
                        "total": done.total,
                        **{
                            s.value: done.counts.get(s, 0)
                            for s in ItemStatus
                            if s.value != "pending"
                        },
                    }
                )
                self.metrics.incr("idv_batches", outcome="completed")
                log.info("batch %s completed; results in %s", batch_id, key)
            return key
        finally:
            self.store.drop_marker(batch_id, "fin")

    def _announce(
        self, batch_id: str, change: Change, at: float, *, paused_by: str | None = None
    ) -> None:
        self.enqueuer.notify(batch_notice(self.store, batch_id, change, at=at, paused_by=paused_by))

    def send_chunks(self, batch_id: str, chunks: list[int]) -> int:
        """Send chunks already marked queued (their bits are cleared if the send fails)."""
        return self._send(batch_id, chunks)

    def _send(self, batch_id: str, chunks: list[int]) -> int:
        if not chunks:
            return 0
        try:
            return self.enqueuer.chunks(batch_id, chunks)
        except BaseException:
            self.store.unmark_queued(batch_id, chunks)
            raise
