"""Onboarding service: one completed verification -> result fetched, evidence in S3, written back.

``OnboardingService.process(job)`` runs the whole flow for one transaction and is safe to run
any number of times (duplicate callbacks, redelivered messages, a worker killed half-way):

1. a finished result record for the transaction exists -> nothing to do;
2. take the per-transaction lease (``worker.stores.leases.LeaseBusy`` if another worker holds it);
3. ``CheckResult`` with images, in the realtime lane, deadline = completion + 30 min;
4. the video: reused if already stored with its SHA-256, else streamed to S3 while the lease is
   renewed; an expired link or a broken transfer gets a fresh link from another ``CheckResult``;
5. the images (``faceImg``, ``idImage``, ``idBackImage``) decoded to S3;
6. the full result JSON to S3, with images and links replaced by pointers to the S3 objects;
7. the result record (pointers only, no personal data) and an event on the results stream.

A transaction the provider does not have moves the ledger to ``expired`` (archival) or
``abandoned``, announced through ``sender`` (``onboarding.expired`` / ``.abandoned``).

If no link can be had in time the evidence is *lost*: the record says so
(``status="evidence_lost"``), a dead letter of kind ``evidence`` is written, a metric counted
and Sentry told. Provider errors (``NotReadyError`` ...) propagate for the task to retry or
dead-letter.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from worker.cloudauth.errors import NotReadyError, TransactionInvalidError
from worker.errors import error_code
from worker.evidence import EvidenceLost, EvidenceUnavailable
from worker.jobs.notices import transaction_ended
from worker.jobs.onboarding import (
    KIND_EVIDENCE,
    KIND_ONBOARDING,
    OnboardingJob,
    default_merchant_biz_id,
)
from worker.keys import KIND_TX, Evidence, ObjectKeys
from worker.onboarding.ports import (
    Announcer,
    CheckResultApi,
    DeadLetters,
    Lease,
    LeaseLost,
    Leases,
    Progress,
    Reporter,
    ResultRecords,
)
from worker.onboarding.results import (
    Archived,
    build_event,
    build_record,
    build_result_document,
)
from worker.ratelimit import CallContext, DeadlineUnreachable, Lane, MaxWaitExceeded
from worker.stores import LeaseBusy

if TYPE_CHECKING:
    from worker.cloudauth.models import CheckResultResult
    from worker.evidence import EvidenceArchiver
    from worker.observability import Metrics
    from worker.storage import ObjectStore, StoredObject

__all__ = [
    "KIND_EVIDENCE",
    "KIND_ONBOARDING",
    "LeaseLost",
    "OnboardingJob",
    "OnboardingService",
    "Outcome",
    "default_merchant_biz_id",
]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What ``process`` did: ``done`` (written now) or ``already_done``, and the record."""

    status: Literal["done", "already_done", "not_ready", "gone"]
    record: Mapping[str, Any]
    evidence_lost: str | None = None

    @property
    def transaction_id(self) -> str:
        return str(self.record["transaction_id"])


# ------------------------------------------------------------------ the service


class OnboardingService:
    """Runs the onboarding flow of one transaction; dependencies are passed in."""

    def __init__(
        self,
        *,
        client: CheckResultApi,
        archiver: EvidenceArchiver,
        objects: ObjectStore,
        keys: ObjectKeys,
        records: ResultRecords,
        leases: Leases,
        deadletters: DeadLetters,
        metrics: Metrics,
        report: Reporter | None = None,
        lease_s: float = 60.0,
        progress: Progress | None = None,
        reconcile_after_s: float = 120.0,
        clock: Callable[[], float] = time.time,
        sender: Announcer | None = None,
    ) -> None:
        self._client = client
        self._archiver = archiver
        self._objects = objects
        self._keys = keys
        self._records = records
        self._leases = leases
        self._deadletters = deadletters
        self._metrics = metrics
        self._report = report
        self._lease_s = lease_s
        self._progress = progress
        # While a run works, the ledger holds the transaction: at least until the reconciler
        # would look again, and never shorter than two leases (a live run renews well within).
        self._hold_s = max(reconcile_after_s, 2 * lease_s)
        self._clock = clock
        self._sender = sender

    def process(self, job: OnboardingJob, *, late: bool = False) -> Outcome:
        """Fetch, archive and write back one transaction (see the module docstring).

        ``late=True`` is an operator's retry of a dead letter: no 30-minute bound on asking for
        links, and a record that says the evidence was lost is redone (it is replaced if the
        video can still be had).
        """
        late = late or job.archival
        tid = job.transaction_id
        if self._progress is not None:
            # This attempt is alive: the reconciler leaves it alone until then.
            self._progress.extend(tid, self._clock() + self._hold_s)
        done = self._finished(tid, late)
        if done is not None:
            return done
        lease = self._leases.acquire(KIND_ONBOARDING, tid, self._lease_s)
        if lease is None:
            # Look again once the holder's lease could be gone.
            raise LeaseBusy(KIND_ONBOARDING, tid, retry_after=min(10.0, self._lease_s) * 0.75)
        try:
            done = self._finished(tid, late)
            if done is not None:
                return done
            deadline = None if late else job.deadline
            try:
                result = self._check(job, deadline)
            except (NotReadyError, TransactionInvalidError) as exc:
                outcome = self._not_there(job, exc)
                if outcome is None:
                    raise
                return outcome
            checked_at = self._clock()  # one clock read for the document and the record
            # CheckResult carries no completion time: the record's is the first time a worker
            # saw the completed result (kept by the ledger), never a callback's arrival.
            seen = job.model_copy(update={"completed_at": self._first_seen(tid, checked_at)})
            archived = self._archive(job, result, deadline, lease)
            result_obj = self._store_result_document(job, seen, result, archived, checked_at)
            record = build_record(seen, result, archived, result_obj, checked_at=checked_at)
            if not lease.renew():
                raise LeaseLost(tid)
            if archived.lost_reason is not None:
                # Recorded before the result record: a crash in between repeats this (the dead
                # letter is idempotent), it never leaves a loss without its dead letter.
                self._evidence_lost(job, archived.lost_reason)
            written = self._records.put_and_publish(
                KIND_TX, tid, record.to_dict(), build_event(record), create_only=not late
            )
            if written is None:
                # Another worker finished first (its lease expired under it): keep its record.
                existing = self._records.get_record(KIND_TX, tid)
                return Outcome("already_done", existing or record.to_dict())
        finally:
            lease.release()
        self._finish(tid, record.to_dict())
        self._metrics.incr("idv_onboarding", outcome=record.status)
        if job.claimed_passed is not None and result.passed != job.claimed_passed:
            # The callback is unsigned; a mismatch is worth seeing, the record holds the truth.
            self._metrics.incr("idv_callback_mismatch", kind="passed")
        return Outcome("done", record.to_dict(), archived.lost_reason)

    def _first_seen(self, tid: str, checked_at: float) -> float:
        if self._progress is None:
            return checked_at
        return self._progress.saw_completed(tid, checked_at) or checked_at

    def _finished(self, tid: str, late: bool) -> Outcome | None:
        existing = self._records.get_record(KIND_TX, tid)
        if existing is None or (late and existing.get("status") == "evidence_lost"):
            return None
        self._metrics.incr("idv_onboarding", outcome="already_done")
        self._finish(tid, existing)
        return Outcome("already_done", existing)

    def _finish(self, tid: str, record: Mapping[str, Any]) -> None:
        """Tell the ledger the transaction is archived (idempotent)."""
        if self._progress is None:
            return
        lost = record.get("status") == "evidence_lost"
        reason = record.get("evidence_lost_reason")
        self._progress.finish(
            tid, evidence="lost" if lost else "stored", reason=str(reason) if reason else None
        )

    def _not_there(self, job: OnboardingJob, exc: Exception) -> Outcome | None:
        """A poll that finds the flow unfinished, or a transaction the provider does not have.

        Returns the outcome when the ledger takes it from here, None when the task should.
        """
        tid = job.transaction_id
        if self._progress is None:
            return None
        if isinstance(exc, NotReadyError):
            if job.mode != "poll":
                return None
            self._progress.poll_later(tid)
            return Outcome("not_ready", {"transaction_id": tid})
        reason = f"CheckResult: {error_code(exc)}"
        ended = self._progress.gone(tid, archival=job.archival, reason=reason)
        if ended is not None and self._sender is not None:
            self._sender.notify(transaction_ended(tid, ended, at=self._clock(), reason=reason))
        return Outcome("gone", {"transaction_id": tid}) if job.mode != "callback" else None

    # --------------------------------------------------------------- steps

    def _check(
        self, job: OnboardingJob, deadline: float | None, *, images: bool = True
    ) -> CheckResultResult:

        if job.archival:
            ctx = CallContext(lane=Lane.ARCHIVAL, deadline=job.archive_by)
        else:
            ctx = CallContext(lane=Lane.REALTIME, deadline=deadline)
        return self._client.check_result(
            transaction_id=job.transaction_id,
            merchant_biz_id=job.merchant_biz_id,
            product_code=job.product_code,
            is_return_image=images,
            ctx=ctx,
        )

    def _fresh_link(self, job: OnboardingJob, deadline: float | None) -> Callable[[], str | None]:

        def fresh() -> str | None:
            try:
                # Only the link is needed: no images, a smaller reply.
                result = self._check(job, deadline, images=False)
            except MaxWaitExceeded:
                # A slot exists before the deadline, just not within the limiter's wait.
                raise EvidenceUnavailable(
                    job.transaction_id, Evidence.VIDEO.value, "no CheckResult slot yet"
                ) from None
            except DeadlineUnreachable:
                raise EvidenceLost(
                    job.transaction_id, Evidence.VIDEO.value, "no CheckResult slot before deadline"
                ) from None
            face = result.ext_face_info
            return face.doc_video_url if face is not None else None

        return fresh

    def _archive(
        self,
        job: OnboardingJob,
        result: CheckResultResult,
        deadline: float | None,
        lease: Lease,
    ) -> Archived:

        archived = Archived()
        tid, when = job.transaction_id, job.completed_datetime

        def heartbeat() -> None:
            if not lease.renew():
                raise LeaseLost(tid)

        face = result.ext_face_info
        link = face.doc_video_url if face is not None else None
        # No link in a face flow's reply: inside the window the flow simply has no video;
        # past it (or on an operator's late retry, deadline None) the video is gone.
        # ID-only products never have one.
        past = deadline is None or self._clock() >= deadline
        if link or (face is not None and past) or self._video_stored(job):
            try:
                video = self._archiver.archive_video(
                    tid,
                    when,
                    link,
                    self._fresh_link(job, deadline),
                    deadline=deadline,
                    heartbeat=heartbeat,
                )
                archived.video = video
                archived.video_status = "reused" if video.reused else "stored"
            except EvidenceLost as exc:
                archived.video_status = "lost"
                archived.lost_reason = exc.reason
        for name, data in _images(result):
            archived.images[name] = self._archiver.store_image(tid, when, name, data)
        return archived

    def _video_stored(self, job: OnboardingJob) -> bool:
        # A video object already stored (by an earlier, interrupted run) is reused even if
        # this reply has no link. Stored objects are complete (a failed write deletes the key);
        # a streamed one carries its SHA-256 only in the records, read back when it is reused.
        key = self._keys.evidence(job.transaction_id, job.completed_datetime, Evidence.VIDEO)
        return self._objects.head(key) is not None

    def _store_result_document(
        self,
        job: OnboardingJob,
        seen: OnboardingJob,
        result: CheckResultResult,
        archived: Archived,
        checked_at: float,
    ) -> StoredObject:
        """The document says ``seen``'s completion time; its key keeps ``job``'s (the
        evidence's) date."""
        doc = build_result_document(seen, result, archived, checked_at=checked_at)
        body = json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
        key = self._keys.result(job.transaction_id, job.completed_datetime)
        return self._objects.put_bytes(key, body, content_type="application/json")

    def _evidence_lost(self, job: OnboardingJob, reason: str) -> None:
        tid = job.transaction_id
        self._metrics.incr("idv_evidence_lost", kind="video")
        if job.archival and self._clock() >= job.deadline:
            # Archival of a flow whose video window closed long ago: expected, not an incident
            # (the ledger keeps the reason).
            return
        self._deadletters.add(
            KIND_EVIDENCE,
            tid,
            f"evidence lost: {reason}",
            code="EvidenceLost",
            payload={"job": job.to_message()},
        )
        if self._report is not None:
            self._report("evidence lost", flow="onboarding", kind="video", transaction_id=tid)


def _images(result: CheckResultResult) -> Iterator[tuple[Evidence, str]]:
    face, ids = result.ext_face_info, result.ext_id_info
    if face is not None and face.face_img:
        yield Evidence.FACE, face.face_img
    if ids is not None and ids.id_image:
        yield Evidence.ID_FRONT, ids.id_image
    if ids is not None and ids.id_back_image:
        yield Evidence.ID_BACK, ids.id_back_image
