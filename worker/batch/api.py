"""The batch flow as a Python API (the ``idv-worker batch`` commands use it)::

    from worker.flows import batches as open_batches

    with open_batches() as batches:              # settings from IDV_* variables
        result = batches.submit("backlog.csv")   # same manifest again -> same batch, resumed
        print(result.batch_id, result.total_rows, result.invalid_rows)
        progress = batches.status(result.batch_id)
        print(progress.counts, progress.remaining, progress.eta_s)
        batches.pause(result.batch_id); batches.resume(result.batch_id)
        with open("results.csv", "w", newline="") as out:
            batches.export(result.batch_id, out, fmt="csv")

Workers (``celery -A worker.app worker -Q idv.bulk``) do the processing; this API only stores
the manifest's rows, sends chunk messages and reads or changes a batch's state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TextIO

from worker.batch.confine import SourcePolicy
from worker.batch.control import BatchControl, RetryResult
from worker.batch.export import iter_results, write_csv, write_jsonl
from worker.batch.model import BatchState, ItemStatus, Progress
from worker.batch.store import BatchStore
from worker.batch.submit import SubmitResult, Submitter
from worker.jobs import OnboardingJob, WorkSender
from worker.keys import ObjectKeys
from worker.ratelimit import QuotaTable
from worker.settings import BatchSettings
from worker.storage import ObjectStore
from worker.stores import ResultStore, SubjectIndex

PROBLEM_STATUSES = (ItemStatus.INVALID, ItemStatus.FAILED, ItemStatus.UNCERTAIN)


class BatchAPI:
    """Submit, watch, control and export batches (one instance per process or thread)."""

    def __init__(
        self,
        settings: BatchSettings,
        *,
        store: BatchStore,
        result_store: ResultStore,
        policy: SourcePolicy,
        subjects: SubjectIndex,
        quotas: QuotaTable,
        object_keys: ObjectKeys,
        enqueuer: WorkSender | None = None,
        make_enqueuer: Callable[[], WorkSender] | None = None,
        objects: ObjectStore | None = None,
        make_objects: Callable[[], ObjectStore] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        """``make_enqueuer``/``make_objects`` are called on first use (reads need no broker
        and no S3); ``on_close`` releases what the caller gave the API to own."""
        if enqueuer is None and make_enqueuer is None:
            raise TypeError("BatchAPI needs an enqueuer or a make_enqueuer factory")
        self.settings = settings
        self._enqueuer = enqueuer
        self._make_enqueuer = make_enqueuer
        self._on_close = on_close
        self._objects = objects
        self._make_objects = make_objects
        self.store = store
        self.result_store = result_store
        self.policy = policy
        self.subjects = subjects
        self.quotas = quotas
        self.object_keys = object_keys

    # ------------------------------------------------------------------ plumbing

    @property
    def enqueuer(self) -> WorkSender:
        """Sends Celery messages (a factory is called on first use: reads need no broker)."""
        if self._enqueuer is None:
            assert self._make_enqueuer is not None
            self._enqueuer = self._make_enqueuer()
        return self._enqueuer

    @property
    def objects(self) -> ObjectStore | None:
        """The object store holding the items' OCR documents (built on first use)."""
        if self._objects is None and self._make_objects is not None:
            self._objects = self._make_objects()
        return self._objects

    @property
    def control(self) -> BatchControl:
        """State changes (pause, resume, cancel, retry)."""
        return self._control(self.enqueuer, objects=self.objects)

    def _control(self, sender: WorkSender, objects: ObjectStore | None = None) -> BatchControl:
        return BatchControl(
            self.store,
            sender,
            self.settings,
            quotas=self.quotas,
            object_keys=self.object_keys,
            results=self.result_store,
            objects=objects,
        )

    def close(self) -> None:
        """Release what the API was given to own (``on_close``)."""
        if self._on_close is not None:
            self._on_close()
            self._on_close = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ operations

    def submit(
        self,
        manifest: str | Path,
        *,
        fmt: Literal["csv", "jsonl"] | None = None,
        doc_type: str | None = None,
        chunk_size: int | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> SubmitResult:
        """Submit a manifest (CSV or JSONL); resubmitting the same file resumes its batch."""
        submitter = Submitter(
            self.store, self.enqueuer, self.settings, policy=self.policy, subjects=self.subjects
        )
        return submitter.submit(
            manifest,
            fmt=fmt,
            default_doc_type=doc_type,
            chunk_size=chunk_size,
            on_progress=on_progress,
        )

    def status(self, batch_id: str) -> Progress:
        """Counters, rate, ETA (from the configured quota) and state."""
        return self._control(_NoEnqueue()).progress(batch_id)

    def list(self, limit: int = 50) -> list[Progress]:
        """The most recent batches, newest first."""
        return [self.status(batch_id) for batch_id in self.store.list_ids(limit)]

    def pause(self, batch_id: str, reason: str = "paused by operator") -> Progress:
        """Stop sending calls for the batch."""
        return self.control.pause(batch_id, reason)

    def resume(self, batch_id: str, *, force: bool = False) -> Progress:
        """Resume a paused batch (or re-enqueue what a running one left behind).

        ``force`` also re-enqueues chunks believed to be waiting in the broker (after a
        broker flush, or a chunk that was dead-lettered); duplicates are harmless.
        """
        return self.control.resume(batch_id, force=force)

    def cancel(self, batch_id: str) -> Progress:
        """Stop the batch for good."""
        return self.control.cancel(batch_id)

    def retry_failed(self, batch_id: str, *, include_uncertain: bool = False) -> RetryResult:
        """Send failed rows again (uncertain ones too if asked: they may be billed twice)."""
        return self.control.retry_failed(batch_id, include_uncertain=include_uncertain)

    def results(
        self, batch_id: str, only: Iterable[ItemStatus] | None = None
    ) -> Iterator[dict[str, Any]]:
        """One dict per row in manifest order (``only``: keep rows with these statuses)."""
        return iter_results(
            self.store, self.result_store, batch_id, only=only, objects=self.objects
        )

    def problems(self, batch_id: str) -> Iterator[dict[str, Any]]:
        """Invalid, failed and uncertain rows with their row numbers and reasons."""
        return self.results(batch_id, only=PROBLEM_STATUSES)

    def export(
        self,
        batch_id: str,
        out: TextIO,
        *,
        fmt: Literal["jsonl", "csv"] = "jsonl",
        only: Iterable[ItemStatus] | None = None,
    ) -> int:
        """Write the batch's results to ``out``; returns the number of rows."""
        rows = self.results(batch_id, only=only)
        return write_csv(rows, out) if fmt == "csv" else write_jsonl(rows, out)

    def wait(
        self,
        batch_id: str,
        *,
        timeout: float,
        until: Iterable[BatchState] = (BatchState.COMPLETED,),
        poll: float = 0.25,
    ) -> Progress:
        """Poll until the batch reaches one of ``until`` (``TimeoutError`` after ``timeout``)."""
        wanted = set(until)
        deadline = time.monotonic() + timeout
        while True:
            progress = self.status(batch_id)
            if progress.state in wanted:
                return progress
            if time.monotonic() > deadline:
                raise TimeoutError(f"batch {batch_id} is {progress.state.value} after {timeout}s")
            time.sleep(poll)


class _NoEnqueue:
    """For read-only operations: never sends anything."""

    def chunks(self, batch_id: str, chunk_nos: Iterable[int], *, countdown: float = 0.0) -> int:
        raise RuntimeError("read-only")

    def watchdog(self, batch_id: str, countdown: float) -> None:
        raise RuntimeError("read-only")

    def finalize(self, batch_id: str) -> None:
        raise RuntimeError("read-only")

    def onboard(
        self,
        job: OnboardingJob,
        *,
        late: bool = False,
        task_id: str | None = None,
        urgent: bool = False,
    ) -> None:
        raise RuntimeError("read-only")

    def archive(self, job: OnboardingJob) -> None:
        raise RuntimeError("read-only")

    def deliver(self, transaction_id: str) -> None:
        raise RuntimeError("read-only")

    def archival_backlog(self) -> int:
        return 0
