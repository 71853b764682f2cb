"""Processing of batch items: a chunk at a time, every item billed at most once.

For each row of a chunk (the chunk's lease held, renewed as it goes):

1. ``begin`` (one script): the batch is still running, the row is pending, its item is not
   already owned by an earlier row (duplicates are marked), and no earlier attempt left a
   claim. A claim without a stored result means a call may have been billed: the row becomes
   ``uncertain`` and is not sent again automatically.
2. Read the image and check it (format by content, size, dimensions, decodes): an unfit image
   is ``invalid``, with its row number and reason, and never sent.
3. Call DocOcrV2 in the limiter's bulk lane. The claim is taken in the transport as the
   request leaves (``worker.batch.calls``).
4. Store the result record and its ``idv:results`` event in one step, then mark the row done
   and drop the claim.

Outcomes by error: sub codes 211/212/213 are answers (done, ``Passed=N``); 400/401 codes
fail the item with the provider's code; ``Forbidden.*`` and credential errors pause the whole
batch and alert once; throttling, transient errors and unreadable sources are retried within
the task (``batch_item_attempts``), then the chunk is retried by Celery with backoff, and
after the task's last retry the item fails with the last error. A reply that may have been
processed but was lost (timeout, broken body) makes the item ``uncertain``.

A chunk whose holder died is **adopted** by a process already running a chunk (``adopt``, from
the takeover index): it runs between two rows of this process's chunk, whose lease the
heartbeat keeps renewed meanwhile, so a dead worker's chunk does not wait in the bulk queue
until some process has finished a whole chunk.
"""

from __future__ import annotations

import base64
import logging
import random
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from worker.backoff import BATCH_ITEM
from worker.batch.calls import ClaimRefused, claiming
from worker.batch.chunking import ChunkOutcome, RetryChunk
from worker.batch.ids import default_merchant_user_id, merchant_biz_id
from worker.batch.model import ItemStatus, StoredRow
from worker.batch.notices import batch_notice
from worker.batch.outcomes import Outcomes, WorkItem
from worker.batch.rows import RowError, parse_source
from worker.batch.sources import ImageReader, ImageRejected, SourceUnavailable, check_image
from worker.batch.store import BatchStore
from worker.cloudauth.client import CloudAuthClient
from worker.cloudauth.errors import (
    AccountError,
    CloudAuthError,
    PermanentError,
    RequestValidationError,
    ThrottledError,
    TransientError,
)
from worker.cloudauth.models import DocOcrResult
from worker.errors import IdvError, error_code, retry_after
from worker.jobs import WorkSender
from worker.keys import ObjectKeys
from worker.observability import Metrics, NullMetrics
from worker.ratelimit import CallContext, DeadlineUnreachable, GateUnavailable, Lane
from worker.settings import BatchSettings
from worker.storage import ObjectStore
from worker.stores import Heartbeat, Held, ResultStore
from worker.stores.replication import NotReplicated

log = logging.getLogger("idv.batch")

# NotReplicated: the item's claim was not confirmed by the replicas, so its call never left.
_RETRYABLE = (ThrottledError, TransientError, SourceUnavailable, NotReplicated)


class _Stop(Exception):
    """Internal: the batch stopped (paused/cancelled) while this item was on its way."""


class _AdoptFirst(Exception):
    """Internal: an adopted chunk waits; this row (its claim dropped) is tried again after."""


class _Yield(Exception):
    """Internal: hand the rest of the chunk on, to run again in ``countdown`` seconds."""

    def __init__(self, countdown: float) -> None:
        self.countdown = countdown
        super().__init__(f"yield for {countdown:.1f}s")


@dataclass(slots=True)
class _Chunk:
    batch_id: str
    chunk_no: int
    token: str
    base_dir: str | None
    product_code: str
    started: float
    renewed: float
    held: Held | None = None


class BatchService:
    """Processes chunks of a batch (see the module docstring). One per worker process."""

    def __init__(
        self,
        *,
        store: BatchStore,
        client: CloudAuthClient,
        reader: ImageReader,
        results: ResultStore,
        objects: ObjectStore,
        enqueuer: WorkSender,
        settings: BatchSettings,
        object_keys: ObjectKeys,
        max_retry_after_s: float = 60.0,
        metrics: Metrics | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        heartbeat: Heartbeat | None = None,
        draining: Callable[[], bool] = lambda: False,
    ) -> None:
        """``heartbeat``: renews the chunk's lease every beat and indexes it by expiry, so a
        dead worker's chunk is taken over within a lease (without it, the lease is renewed
        between items and must outlast a limiter wait plus an answer). ``draining``: whether
        the node is shutting down; then a chunk hands its rest back after the current row."""
        self.heartbeat = heartbeat
        self._draining = draining
        self.store = store
        self.client = client
        self.reader = reader
        self.results = results
        self.enqueuer = enqueuer
        self.settings = settings
        self.max_retry_after_s = max_retry_after_s
        self.metrics: Metrics = metrics if metrics is not None else NullMetrics()
        self._sleep = sleep
        self._monotonic = monotonic
        self._rng = random.Random()
        self.objects = objects
        self.outcomes = Outcomes(store, results, self.metrics, objects, object_keys)
        self._lock = threading.Lock()
        self._running = 0  # chunks this process works through now (2 while one is adopted)
        self._adopted: tuple[str, int] | None = None
        self._room = threading.Event()

    # ------------------------------------------------------------------ chunks

    def process_chunk(self, batch_id: str, chunk_no: int, *, give_up: bool = False) -> ChunkOutcome:
        """Process the pending rows of one chunk. ``give_up``: last try, fail what still fails.

        Raises ``RetryChunk`` when the chunk should be tried again later. A chunk adopted
        meanwhile (``adopt``) runs between two rows, within this task's budget.
        """
        started = self._monotonic()
        with self._lock:
            self._running += 1
        try:
            self.adopt_offered()  # a dead worker's chunk goes first
            outcome = self._run_chunk(batch_id, chunk_no, give_up=give_up, started=started)
            self._run_adopted(started)  # adopted as this chunk ended
            return outcome
        finally:
            with self._lock:
                self._running -= 1
                if self._running == 0:
                    self._room.clear()
                if self._running == 0 and self._adopted is not None:
                    # Not started: its entry comes due again and another worker adopts it.
                    log.info("batch %s: adopted chunk %d left to another worker", *self._adopted)
                    self._adopted = None

    # ------------------------------------------------------------------ sharing the process

    @property
    def can_make_room(self) -> bool:
        """Whether this process runs one chunk of its own and nothing adopted: handing that
        on frees the process (a dead worker's chunk it adopted is never handed back to the
        queue for this)."""
        return self._running == 1 and self._adopted is None

    def make_room(self) -> bool:
        """Hand the running chunk on after the current row, so this process takes the
        message of a latency lane that waits for one (the worker consumes both lanes:
        ``worker.wiring.room``). False (nothing done) unless ``can_make_room``."""
        with self._lock:
            if not self.can_make_room:
                return False
            self._room.set()
            return True

    # ------------------------------------------------------------------ adoption

    def adopt(self, batch_id: str, chunk_no: int) -> bool:
        """Run ``chunk_no`` (whose holder died) next, between two rows of the chunk this process
        runs now. False when this process runs no chunk, already adopted one, or is draining:
        then another worker adopts it (``adopt_offered``) or its message runs it."""
        with self._lock:
            if (
                self._running != 1
                or self._adopted is not None
                or self._draining()
                or self._room.is_set()
            ):
                return False
            self._adopted = (batch_id, chunk_no)
            return True

    def adopt_offered(self) -> None:
        """A heartbeat tick: adopt a chunk another worker offered, if this process can."""
        with self._lock:
            if self._running != 1 or self._adopted is not None:
                return
        offer = self.store.take_orphan()
        if offer is not None and not self.adopt(*offer):
            self.store.offer_orphan(*offer)  # this chunk ended meanwhile: left for another

    def _adoption_waits(self) -> bool:
        """An adopted chunk waits and this process runs only its own chunk now."""
        return self._adopted is not None and self._running == 1

    def _run_adopted(self, started: float) -> None:
        with self._lock:
            adopted, self._adopted = self._adopted, None
            if adopted is None:
                return
            self._running += 1
        batch_id, chunk_no = adopted
        try:
            outcome = self._run_chunk(batch_id, chunk_no, give_up=False, started=started)
            log.info("batch %s: adopted chunk %d %s", batch_id, chunk_no, outcome.name.lower())
        except IdvError as exc:  # RetryChunk, a batch gone: never the running task's error
            # Its release left it due in the takeover index, which sends it again. Anything
            # else (Redis away, the task's time limit) goes on to the running task.
            log.warning("batch %s: adopted chunk %d stopped (%s); it is sent again",
                        batch_id, chunk_no, error_code(exc))  # fmt: skip
        finally:
            with self._lock:
                self._running -= 1

    def _run_chunk(
        self, batch_id: str, chunk_no: int, *, give_up: bool, started: float
    ) -> ChunkOutcome:
        token = secrets.token_hex(8)
        lease_s = self.settings.batch_lease_s
        taken = self.store.acquire_chunk(batch_id, chunk_no, token, lease_s)
        if taken < 0:
            return ChunkOutcome.ALREADY_DONE
        if taken == 0:
            return ChunkOutcome.BUSY
        mode, countdown = "stop", 0.0
        held: Held | None = None
        try:
            meta = self.store.meta(batch_id)
            chunk = _Chunk(
                batch_id,
                chunk_no,
                token,
                meta.get("base_dir") or None,
                meta.get("product_code") or self.settings.batch_product_code,
                started,
                self._monotonic(),
            )
            if self.heartbeat is not None:
                held = chunk.held = self.heartbeat.hold(
                    f"chunk:{batch_id}:{chunk_no}",
                    lambda: self.store.acquire_chunk(batch_id, chunk_no, token, lease_s) == 1,
                    lease_s,
                )
            size = int(meta["chunk_size"])
            rows = self.store.read_chunk(batch_id, chunk_no, size)
            statuses = self.store.statuses(batch_id, chunk_no * size, len(rows))
            for row, status in zip(rows, statuses, strict=True):
                if status is not ItemStatus.PENDING or row.spec is None:
                    continue
                if (
                    self._monotonic() - chunk.started > self.settings.batch_chunk_budget_s
                    or self._draining()
                    or self._room.is_set()
                ):
                    # Budget used up, the node is shutting down, or a latency lane's message
                    # waits for this process (``make_room``).
                    mode = "yield"
                    return ChunkOutcome.YIELDED
                while True:
                    if self._adoption_waits():
                        self._run_adopted(chunk.started)  # this chunk's lease is renewed
                        if self._monotonic() - chunk.started > self.settings.batch_chunk_budget_s:
                            mode = "yield"
                            return ChunkOutcome.YIELDED
                    if not self._renew(chunk):
                        mode = "lost"
                        return ChunkOutcome.LOST
                    try:
                        going = self._process_row(chunk, row, give_up=give_up)
                    except _AdoptFirst:
                        continue  # the row is pending again: the adopted chunk, then this row
                    break
                if not going:
                    return ChunkOutcome.STOPPED
            mode = "done"
            return ChunkOutcome.COMPLETED
        except _Yield as exc:
            mode, countdown = "yield", exc.countdown
            return ChunkOutcome.YIELDED
        except Exception:
            # Celery retries the message (RetryChunk, or any unexpected error through the
            # task's error policy): mark the chunk queued so the watchdog does not send a
            # second copy meanwhile, nor keep re-sending a chunk that ends dead-lettered.
            mode = "retry"
            raise
        finally:
            self.outcomes.flush()
            if held is not None:
                self._unhold(held, mode, countdown)
            self._release(batch_id, chunk_no, token, mode, countdown)

    def _release(
        self, batch_id: str, chunk_no: int, token: str, mode: str, countdown: float
    ) -> None:
        """Give the chunk's lease up; ``yield`` re-enqueues it, ``retry`` leaves that to Celery."""
        if mode == "lost":
            return
        stored_mode = {"yield": "requeue", "retry": "requeue"}.get(mode, mode)
        done, total, state = self.store.release_chunk(batch_id, chunk_no, token, stored_mode)
        if mode == "yield":
            self.enqueuer.chunks(batch_id, [chunk_no], countdown=countdown)
        if mode == "done":
            self.store.touch(batch_id)
            if 0 <= total <= done and state == "running":
                self.enqueuer.finalize(batch_id)

    def _unhold(self, held: Held, mode: str, countdown: float) -> None:
        """Stop renewing; a chunk handed on stays due in case its message dies with us."""
        assert self.heartbeat is not None
        if mode == "yield":
            keep: float | None = self.store.clock() + countdown + self.grace_s
        elif mode == "retry":
            # The task sets the retry's own due time; until then, not before a lease.
            keep = self.store.clock() + self.settings.batch_lease_s + self.grace_s
        else:
            keep = None  # done, stopped (resume re-sends), lost (the new holder owns it)
        if mode == "lost":
            self.heartbeat.forget(held)  # the entry is the new holder's now
        else:
            self.heartbeat.release(held, keep_due=keep)

    @property
    def grace_s(self) -> float:
        """How long after its due time a delayed chunk message may still arrive on its own."""
        return 2 * (self.heartbeat.every_s if self.heartbeat is not None else 2.0) + 1.0

    def _renew(self, chunk: _Chunk) -> bool:
        if chunk.held is not None:
            return not chunk.held.lost
        now = self._monotonic()
        if now - chunk.renewed < self.settings.batch_lease_s / 3:
            return True
        chunk.renewed = now
        return (
            self.store.acquire_chunk(
                chunk.batch_id, chunk.chunk_no, chunk.token, self.settings.batch_lease_s
            )
            == 1
        )

    # ------------------------------------------------------------------ rows

    def _process_row(self, chunk: _Chunk, row: StoredRow, *, give_up: bool) -> bool:
        """Handle one row; False if the batch stopped."""
        assert row.spec is not None
        item = WorkItem(chunk.batch_id, row, row.spec.item_id, chunk.token)
        begin = self.store.begin(chunk.batch_id, row, item.item_id)
        if begin.verdict == "stop":
            return False
        if begin.verdict == "dup":
            self.outcomes.count(ItemStatus.DUPLICATE)
            return True
        if begin.verdict == "claimed":
            self.outcomes.recover(item, begin.extra)
            return True
        if begin.verdict != "go":
            return True
        try:
            self._attempts(chunk, item, give_up=give_up)
        except _Stop:
            return False
        return True

    def _attempts(self, chunk: _Chunk, item: WorkItem, *, give_up: bool) -> None:
        attempts = self.settings.batch_item_attempts
        for attempt in range(1, attempts + 1):
            try:
                self._attempt(chunk, item)
                return
            except DeadlineUnreachable as exc:
                # The bulk lane is full (onboarding goes first): come back later without
                # holding the chunk. Waiting for capacity is not a failure of the item.
                self.outcomes.drop_claim(item)
                raise _Yield(self._backoff(attempts + 2, exc)) from exc
            except GateUnavailable as exc:
                self.outcomes.drop_claim(item)
                raise RetryChunk(exc) from exc
            except _RETRYABLE as exc:
                self.outcomes.drop_claim(item)
                if attempt == attempts:
                    if give_up:
                        code = error_code(exc)
                        self.outcomes.fail(item, code, f"gave up after repeated errors: {exc}")
                        return
                    raise RetryChunk(exc) from exc
                if self._adoption_waits():
                    raise _AdoptFirst from exc  # rather than wait out a backoff here
                self._sleep(self._backoff(attempt, exc))
                if not self._renew(chunk):
                    raise _Stop from exc

    def _backoff(self, attempt: int, exc: BaseException) -> float:
        """The pause before the next try: backoff, or what the error asks for up to the cap."""
        delay = BATCH_ITEM.delay(attempt - 1, self._rng)
        return max(delay, retry_after(exc, self.max_retry_after_s) or 0.0)

    def _attempt(self, chunk: _Chunk, item: WorkItem) -> None:
        image = self._load_image(chunk, item)
        if image is None:
            return
        try:
            result = self._call(chunk, item, image)
        except ClaimRefused as exc:
            if exc.batch_stopped:
                raise _Stop from None
            if exc.reason == "claimed":
                # Another worker is sending (or sent) this item: never both.
                self.outcomes.recover(item, "")
            return
        except RequestValidationError as exc:
            self.outcomes.invalid(item, exc.code or "InvalidArgument", exc.message)
            return
        except AccountError as exc:
            self.outcomes.drop_claim(item)
            at = self.outcomes.pause_for_account(item.batch_id, exc)
            if at is not None:
                self.enqueuer.notify(
                    batch_notice(self.store, item.batch_id, "paused", at=at, paused_by="provider")
                )
            raise _Stop from None
        except PermanentError as exc:
            self.outcomes.fail(
                item, exc.code, exc.message, request_id=exc.request_id, http=exc.status
            )
            return
        except TransientError as exc:
            if exc.maybe_processed:
                self.outcomes.uncertain(
                    item,
                    "the provider may have processed the call but no answer came back "
                    f"({exc.code})",
                )
                return
            raise
        except CloudAuthError:
            raise
        self.outcomes.done(item, chunk.product_code, result)

    def _load_image(self, chunk: _Chunk, item: WorkItem) -> str | None:
        """The row's image, checked and base64-encoded; None once an unfit row is recorded."""
        spec = item.row.spec
        assert spec is not None
        try:
            source = parse_source(spec.source, chunk.base_dir)
            data = self.reader.read(source, base_dir=chunk.base_dir)
            check_image(data)
        except RowError as exc:
            self.outcomes.invalid(item, "InvalidSource", exc.reason)
            return None
        except ImageRejected as exc:
            self.outcomes.invalid(item, exc.code, exc.reason)
            return None
        return base64.b64encode(data).decode("ascii")

    def _call(self, chunk: _Chunk, item: WorkItem, image: str) -> DocOcrResult:
        """Send DocOcrV2 for the row, the claim taken as the request leaves."""
        spec = item.row.spec
        assert spec is not None
        store = self.store
        with claiming(lambda: store.claim(item.batch_id, item.row.seq, item.item_id, item.token)):
            return self.client.doc_ocr_v2(
                merchant_biz_id=merchant_biz_id(item.batch_id, item.item_id),
                merchant_user_id=spec.merchant_user_id
                or default_merchant_user_id(item.batch_id, item.item_id),
                doc_type=spec.doc_type,
                image_base64=image,
                card_side=spec.card_side,
                spoof=spec.spoof,
                face_quality=spec.face_quality,
                id_threshold=spec.id_threshold,
                product_code=chunk.product_code,
                ctx=CallContext(lane=Lane.BULK),
            )
