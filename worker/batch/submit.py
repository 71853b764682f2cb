"""Streaming submission of a manifest: constant memory, resumable, one message per chunk.

Two passes over the file. The first hashes it (the batch id) and checks it is UTF-8, so a
batch is never half-created from a file that turns out unreadable. The second parses rows one
at a time, checks each (no I/O: images are checked by the workers, just before the call), packs
``batch_chunk_size`` rows into a compressed chunk, stores it and enqueues one Celery message
carrying only the batch id and chunk number. A row's merchant user id is replaced by its keyed
pseudonym before anything is stored (``worker.stores.subjects``). Invalid rows are recorded
with their row number and reason as they are met.

Submitting the same manifest again finds the same batch: a complete submission is resumed (a
paused batch is resumed, lost chunks are re-enqueued, nothing is duplicated); an interrupted
one continues after the last stored chunk. Each stored chunk also records that its message was
sent (``sent_chunks``), so a submitter that died between the two resends exactly that message.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from worker.batch.confine import SourcePolicy
from worker.batch.ids import ManifestHasher
from worker.batch.manifest import (
    Format,
    ManifestError,
    check_encoding,
    detect_format,
    iter_manifest,
)
from worker.batch.model import BatchState, encode_chunk
from worker.batch.rows import ItemSpec, ParsedRow
from worker.batch.store import BatchStore
from worker.errors import IdvError
from worker.jobs import WorkSender
from worker.settings import BatchSettings
from worker.stores import KIND_SUBJECT_BATCH, SubjectIndex

_SUBMIT_LEASE_S = 120.0
INVALID_SAMPLE = 20


class SubmitError(IdvError, RuntimeError):
    """The submission cannot proceed (another submitter is at work, batch cancelled...)."""

    def __init__(self, batch_id: str, reason: str) -> None:
        self.batch_id = batch_id
        self.reason = reason
        super().__init__(f"batch {batch_id}: {reason}")


@dataclass(slots=True)
class SubmitResult:
    """What a submission did. ``created`` is false when the batch already existed."""

    batch_id: str
    created: bool
    state: BatchState
    total_rows: int
    invalid_rows: int
    chunks: int
    enqueued: int
    seconds: float
    invalid_sample: list[tuple[int, int, str]] = field(default_factory=list)

    @property
    def rows_per_s(self) -> float:
        """Submission speed of this call."""
        return self.total_rows / self.seconds if self.seconds > 0 else 0.0


def hash_manifest(path: Path, options: dict[str, str | None]) -> tuple[str, int]:
    """``(batch_id, size)``; raises ``ManifestError`` if the file is not UTF-8."""
    hasher = ManifestHasher(options)
    check_encoding(path, on_block=hasher.update)
    return hasher.batch_id(), hasher.size


def check_first_row(path: Path, form: Format, default_doc_type: str | None) -> None:
    """Raise ``ManifestError`` for a manifest without rows or with an unusable header, before
    any batch is made of it."""
    rows = iter_manifest(path, form, default_doc_type)
    try:
        if next(iter(rows), None) is None:
            raise ManifestError("no rows: the manifest is empty")
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()


@dataclass(slots=True)
class _Pass:
    """The second pass over a manifest: what it has met, and the chunk it is filling."""

    batch_id: str
    size: int  # rows per chunk
    stored: int  # chunks stored by an earlier, interrupted run
    chunk_no: int
    enqueued: int = 0
    total: int = 0
    invalid_rows: int = 0
    sample: list[tuple[int, int, str]] = field(default_factory=list)
    rows: list[tuple[int, ItemSpec | None]] = field(default_factory=list)
    invalid: list[tuple[int, str]] = field(default_factory=list)


class Submitter:
    """Submits manifests into ``store`` and enqueues their chunks through ``enqueuer``."""

    def __init__(
        self,
        store: BatchStore,
        enqueuer: WorkSender,
        settings: BatchSettings,
        *,
        policy: SourcePolicy,
        subjects: SubjectIndex,
    ) -> None:
        self.store = store
        self.enqueuer = enqueuer
        self.settings = settings
        self.subjects = subjects
        self.policy = policy

    def submit(
        self,
        manifest: str | Path,
        *,
        fmt: str | None = None,
        default_doc_type: str | None = None,
        chunk_size: int | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> SubmitResult:
        """Submit (or resume) the batch of ``manifest``; see the module docstring."""
        started = time.monotonic()
        path = Path(manifest).resolve()
        if not path.is_file():
            raise ManifestError(f"manifest {path.name!r} is not a readable file")
        form: Format = detect_format(path, fmt)
        default = default_doc_type or self.settings.batch_default_doc_type
        product = self.settings.batch_product_code
        options = {"format": form, "default_doc_type": default, "product_code": product}
        batch_id, size = hash_manifest(path, options)
        check_first_row(path, form, default)
        created = self.store.create(
            batch_id,
            {
                "manifest": str(path),
                "base_dir": str(path.parent),
                "format": form,
                "size": size,
                "chunk_size": chunk_size or self.settings.batch_chunk_size,
                "product_code": product,
                "default_doc_type": default or "",
            },
        )
        meta = self.store.meta(batch_id)
        if not created and meta.get("submitted") == "1":
            return self._resume(batch_id, started)
        state = BatchState(meta["state"])
        if state is BatchState.CANCELLED:
            raise SubmitError(batch_id, "the batch was cancelled while it was being submitted")
        token = secrets.token_hex(8)
        if not self.store.acquire_submitter(batch_id, token, _SUBMIT_LEASE_S):
            raise SubmitError(batch_id, "another process is submitting this manifest right now")
        try:
            result = self._write(batch_id, path, form, default, meta, token, on_progress)
        except ManifestError:
            # Unusable further down (a malformed CSV line): a batch of which nothing was sent
            # is not left behind; one whose first chunks went out stays, to be seen and erased.
            if created and self.store.meta(batch_id).get("sent_chunks", "0") == "0":
                self.store.delete(batch_id)
            raise
        finally:
            self.store.release_submitter(batch_id, token)
        result.created = created
        result.seconds = time.monotonic() - started
        return result

    def _write(
        self,
        batch_id: str,
        path: Path,
        form: Format,
        default: str | None,
        meta: dict[str, str],
        token: str,
        on_progress: Callable[[int], None] | None,
    ) -> SubmitResult:
        size = int(meta["chunk_size"])
        stored = int(meta.get("submitted_chunks", "0"))
        run = _Pass(batch_id, size, stored, chunk_no=stored)
        run.enqueued = self._resend_unsent(batch_id, stored, int(meta.get("sent_chunks", "0")))
        self._store_rows(run, iter_manifest(path, form, default), token, on_progress)
        chunks = (run.total + size - 1) // size
        self.store.set_meta(
            batch_id,
            submitted=1,
            total_rows=run.total,
            total_chunks=chunks,
            invalid_at_submit=run.invalid_rows,
            submitted_at=f"{time.time():.6f}",
        )
        self.store.touch(batch_id)
        if chunks == 0 or self.store.progress(batch_id).chunks_done >= chunks:
            self.enqueuer.finalize(batch_id)
        self._arm_watchdog(batch_id)
        if on_progress is not None:
            on_progress(run.total)
        return SubmitResult(
            batch_id=batch_id,
            created=True,
            state=self.store.state(batch_id),
            total_rows=run.total,
            invalid_rows=run.invalid_rows,
            chunks=chunks,
            enqueued=run.enqueued,
            seconds=0.0,
            invalid_sample=run.sample,
        )

    def _resend_unsent(self, batch_id: str, stored: int, sent: int) -> int:
        """Send the messages of stored chunks a previous submitter may have died before sending."""
        if sent >= stored:
            return 0
        enqueued = self.enqueuer.chunks(batch_id, range(sent, stored))
        self.store.set_meta(batch_id, sent_chunks=stored)
        return enqueued

    def _store_rows(
        self,
        run: _Pass,
        parsed_rows: Iterable[ParsedRow],
        token: str,
        on_progress: Callable[[int], None] | None,
    ) -> None:
        """Count every row; store and send the chunks after those an earlier run stored."""
        last_lease = time.monotonic()
        for parsed in parsed_rows:
            run.total += 1
            code = "InvalidRow"
            refused = self.policy.refusal(parsed.spec.source) if parsed.spec else None
            if refused is not None:
                # Stored without its source (see ``SourcePolicy.refusal``).
                parsed = ParsedRow(parsed.row, parsed.line, None, refused.reason)
                code = refused.code
            parsed = self._pseudonymised(parsed)
            if parsed.error is not None:
                run.invalid_rows += 1
                if len(run.sample) < INVALID_SAMPLE:
                    run.sample.append((parsed.row, parsed.line, parsed.error))
            if (parsed.row - 1) // run.size < run.stored:
                continue  # stored by an earlier, interrupted run
            seq = parsed.row - 1
            run.rows.append((parsed.line, parsed.spec))
            if parsed.error is not None:
                detail = {"row": parsed.row, "line": parsed.line, "code": code}
                run.invalid.append((seq, json.dumps({**detail, "reason": parsed.error})))
            if len(run.rows) == run.size:
                self._flush(run)
                if on_progress is not None:
                    on_progress(run.total)
                if time.monotonic() - last_lease > _SUBMIT_LEASE_S / 4:
                    last_lease = time.monotonic()
                    if not self.store.acquire_submitter(run.batch_id, token, _SUBMIT_LEASE_S):
                        raise SubmitError(run.batch_id, "lost the submission lease")
        if run.rows:
            self._flush(run)

    def _pseudonymised(self, parsed: ParsedRow) -> ParsedRow:
        """The row with its merchant user id replaced by the id's keyed pseudonym.

        The raw id is never stored (chunk, index) nor sent (``MerchantUserId``); a derived
        item id is derived from the pseudonym.
        """
        spec = parsed.spec
        if spec is None or spec.merchant_user_id is None:
            return parsed
        pseudonym = self.subjects.pseudonym(spec.merchant_user_id)
        return replace(parsed, spec=replace(spec, merchant_user_id=pseudonym))

    def _flush(self, run: _Pass) -> None:
        run.enqueued += self._store_chunk(run.batch_id, run.chunk_no, run.rows, run.invalid)
        run.chunk_no += 1
        run.rows, run.invalid = [], []

    def _store_chunk(
        self,
        batch_id: str,
        chunk_no: int,
        rows: list[tuple[int, ItemSpec | None]],
        invalid: list[tuple[int, str]],
    ) -> int:
        # Indexed (by pseudonym) before the chunk is stored: erasure by merchant user finds its
        # batches here.
        users = {spec.merchant_user_id for _, spec in rows if spec and spec.merchant_user_id}
        self.subjects.add(users, KIND_SUBJECT_BATCH, batch_id)
        self.store.write_chunk(batch_id, chunk_no, encode_chunk(rows), len(rows), invalid)
        sent = self.enqueuer.chunks(batch_id, [chunk_no])
        self.store.set_meta(batch_id, sent_chunks=chunk_no + 1)
        return sent

    def _resume(self, batch_id: str, started: float) -> SubmitResult:
        """The manifest was fully submitted before: make sure the batch is moving."""
        state = self.store.state(batch_id)
        if state is BatchState.PAUSED:
            self.store.transition(batch_id, "resume")
        enqueued = 0
        if self.store.state(batch_id) is BatchState.RUNNING:
            chunks = self.store.requeue_candidates(batch_id)
            try:
                enqueued = self.enqueuer.chunks(batch_id, chunks)
            except BaseException:
                self.store.unmark_queued(batch_id, chunks)
                raise
            progress = self.store.progress(batch_id)
            if progress.chunks_done >= progress.chunks:
                self.enqueuer.finalize(batch_id)
            self._arm_watchdog(batch_id)
        meta = self.store.meta(batch_id)
        return SubmitResult(
            batch_id=batch_id,
            created=False,
            state=self.store.state(batch_id),
            total_rows=int(meta.get("total_rows", "0")),
            invalid_rows=int(meta.get("invalid_at_submit", "0")),
            chunks=int(meta.get("total_chunks", "0")),
            enqueued=enqueued,
            seconds=time.monotonic() - started,
        )

    def _arm_watchdog(self, batch_id: str) -> None:
        interval = self.settings.batch_watchdog_interval_s
        if self.store.arm_marker(batch_id, "wd", 3 * interval):
            self.enqueuer.watchdog(batch_id, interval)
