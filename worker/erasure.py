"""Erasure on request: everything kept about a transaction, a merchant user or a batch goes.

``idv-worker erase --transaction TID | --merchant-user ID | --batch ID`` runs ``Eraser``:

* **transaction**: the result record (it names the S3 objects), the result document and every
  evidence object (``evidence/<date>/<tid>/``; without a record both prefixes are searched),
  each with every version and delete marker and any upload in progress (``S3ObjectStore.purge``),
  the callback marker, leases, dead letters (``onboarding``, ``evidence``, ``webhook``: the
  events' dead letters are kept under ``tx:<tid>:<event id>``), its events in the webhook
  outbox (``worker.jobs.outbox``), the events of the transaction on the results stream
  (XDEL), its membership in the merchant-user index, and its ledger entries
  (``ledger_eraser``; see below);
* **merchant user**: every transaction and batch the index (``worker.stores.subjects``) lists
  for the id's keyed pseudonym (Redis, the provider and the audit only ever see the pseudonym;
  the raw id is given here and hashed); in a batch, each row of that user loses its source and
  pseudonym (the chunk is rewritten), its item's S3 document, record, events, claim and owner
  entry; a pending row becomes ``invalid`` (code ``Erased``); the batch's exported results are
  written again without the rows and their earlier versions are purged; the index key goes
  last;
* **batch**: every Redis key and S3 object of the batch, its item records, dead letters
  (its webhook events' too, ``batch:<id>:<event id>``), leases, events, its events in the
  webhook outbox, and its index memberships.

S3 copies erasure cannot remove are listed in the report's ``remaining`` (key, version, why):
versions under Object Lock retention or legal hold, and keys the bucket replicates elsewhere
(``worker.storage.purge``). Nothing is dropped silently.

Each run appends one entry to the audit stream ``<ns>audit``: when, by whom (the operator),
what kind of subject, the subject as a keyed pseudonym (``Pseudonyms``, HMAC under
``IDV_SUBJECT_KEY``: transaction and merchant user ids identify a person and cannot be
recovered from it by hashing candidates; batch ids are not personal and stay as they are) and
how many objects, versions, uploads, keys, events, dead letters, leases, rows and ledger
entries went, and how many copies remain. No personal data.

The ledger's entries go through ``ledger_eraser(kind, id) -> int`` (``Cli.eraser`` passes
``Ledger.delete``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, cast

import redis

from worker.batch import (
    BatchNotFound,
    BatchStore,
    ItemSpec,
    ItemStatus,
    encode_chunk,
    iter_results,
    jsonl_blocks,
)
from worker.jobs import KIND_WEBHOOK
from worker.jobs.outbox import SCOPES, Outbox
from worker.keys import KIND_ITEM, KIND_TX, ObjectKeys, item_ref, parse_transaction_id, validate_id
from worker.storage import PurgeOutcome, ReplicationRule, S3ObjectStore, StorageError
from worker.stores import (
    KIND_SUBJECT_BATCH,
    KIND_SUBJECT_TX,
    DeadLetterStore,
    ResultStore,
    SubjectIndex,
)

LedgerEraser = Callable[[str, str], int]
TX_DEAD_LETTER_KINDS = ("onboarding", "evidence", "webhook")
BATCH_DEAD_LETTER_KINDS = ("batch-chunk", "batch-watchdog", "batch-finalize")
AUDIT_MAXLEN = 100_000
ERASED_SOURCE = "erased:"
_STREAM_PAGE = 1000


@dataclass(slots=True)
class ErasureReport:
    """What one erasure removed (counts) and the S3 copies it could not (``remaining``).

    ``subject`` is a keyed pseudonym or a batch id; ``s3_objects`` counts keys of which no
    version is left, ``s3_versions`` and ``s3_delete_markers`` what was deleted to get there,
    ``s3_uploads`` the multipart uploads aborted.
    """

    what: str
    subject: str
    s3_objects: int = 0
    s3_versions: int = 0
    s3_delete_markers: int = 0
    s3_uploads: int = 0
    redis_keys: int = 0
    stream_events: int = 0
    dead_letters: int = 0
    leases: int = 0
    batch_rows: int = 0
    ledger_entries: int = 0
    outbox_events: int = 0
    remaining: list[dict[str, Any]] = field(default_factory=list)

    def add(self, other: ErasureReport) -> None:
        """Add another report's counts (and what it left) to this one."""
        for f in fields(self):
            if f.type == "int":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        self.remaining.extend(other.remaining)

    def add_purge(self, outcome: PurgeOutcome) -> None:
        """Count what one ``S3ObjectStore.purge`` removed and keep what it could not."""
        self.s3_objects += outcome.objects
        self.s3_versions += outcome.versions
        self.s3_delete_markers += outcome.delete_markers
        self.s3_uploads += outcome.uploads
        self.remaining.extend(r.as_dict() for r in outcome.remaining)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Eraser:
    """Erases subjects (see the module docstring); dependencies are passed in."""

    def __init__(
        self,
        *,
        redis_client: redis.Redis,
        namespace: str,
        object_keys: ObjectKeys,
        objects: S3ObjectStore,
        results: ResultStore,
        deadletters: DeadLetterStore,
        batches: BatchStore,
        subjects: SubjectIndex,
        ledger_eraser: LedgerEraser | None = None,
        outbox: Outbox | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis_client
        self.ns = namespace
        self.objects = objects
        self.keys = object_keys
        self.results = results
        self.deadletters = deadletters
        self.batches = batches
        self.subjects = subjects
        self.ledger_eraser = ledger_eraser
        self.outbox = outbox
        self._clock = clock
        self._replication: tuple[ReplicationRule, ...] | None = None

    @property
    def audit_stream(self) -> str:
        """``<ns>audit``: one entry per erasure, without personal data."""
        return f"{self.ns}audit"

    # ------------------------------------------------------------------ entry points

    def erase_transaction(self, transaction_id: str, *, by: str) -> ErasureReport:
        """Erase one onboarding transaction."""
        tid = parse_transaction_id(transaction_id)
        report = self._transaction(tid)
        report.redis_keys += self.subjects.drop_member(KIND_SUBJECT_TX, tid)
        self._audit(report, by)
        return report

    def erase_merchant_user(self, merchant_user_id: str, *, by: str) -> ErasureReport:
        """Erase every transaction and batch row of one (raw) merchant user id."""
        pseudonym = self.subjects.pseudonym(merchant_user_id)
        report = ErasureReport("merchant_user", pseudonym)
        for kind, ref in self.subjects.refs(pseudonym):
            if kind == KIND_SUBJECT_TX:
                report.add(self._transaction(ref))
            elif kind == KIND_SUBJECT_BATCH:
                report.add(self._user_rows(ref, pseudonym))
        report.redis_keys += self.subjects.forget(pseudonym)
        self._audit(report, by)
        return report

    def erase_batch(self, batch_id: str, *, by: str) -> ErasureReport:
        """Erase a whole batch."""
        batch = validate_id(batch_id, "batch_id")
        report = ErasureReport("batch", batch)
        report.add_purge(self._purge(self.keys.batch_prefix(batch)))
        report.redis_keys += self.batches.delete(batch)
        report.redis_keys += self._delete_matching(f"{self.ns}result:{KIND_ITEM}:{batch}:*")
        report.leases += self._delete_matching(f"{self.ns}lease:*:{batch}:*")
        report.leases += self._delete_matching(f"{self.ns}lease:*:{batch}")
        for kind in BATCH_DEAD_LETTER_KINDS:
            report.dead_letters += self._remove_dead_letters(
                kind, lambda ref: ref == batch or ref.startswith(f"{batch}:")
            )
        report.add(self._events("batch", batch))
        report.stream_events += self._xdel_where(
            lambda f: (
                f.get("batch_id") == batch
                or f.get("id") == batch
                or f.get("id", "").startswith(f"{batch}:")
            )
        )
        report.redis_keys += self.subjects.drop_member(KIND_SUBJECT_BATCH, batch)
        self._audit(report, by)
        return report

    # ------------------------------------------------------------------ transactions

    def _transaction(self, tid: str) -> ErasureReport:
        report = ErasureReport("transaction", self.subjects.pseudonyms.transaction(tid))
        record = self.results.get_record(KIND_TX, tid)
        self._purge_transaction_objects(tid, record, report)
        record_key = self.results.record_key(KIND_TX, tid)
        report.redis_keys += int(cast("int", self.redis.delete(record_key)))
        report.leases += self._delete_matching(f"{self.ns}lease:*:{tid}")
        for kind in TX_DEAD_LETTER_KINDS:
            if self.deadletters.remove(kind, tid):
                report.dead_letters += 1
        report.add(self._events("tx", tid))
        report.stream_events += self._xdel_where(
            lambda f: f.get("id") == tid or f.get("transaction_id") == tid
        )
        if self.ledger_eraser is not None:
            report.ledger_entries += self.ledger_eraser(KIND_TX, tid)
        return report

    def _purge_transaction_objects(
        self, tid: str, record: Mapping[str, Any] | None, report: ErasureReport
    ) -> None:
        def mine(key: str) -> bool:
            return f"/{tid}/" in key or key.endswith(f"/{tid}.json")

        if record is None:
            # No record (expired, or never finished): search both prefixes for the id.
            for top in ("evidence/", "results/"):
                report.add_purge(self._purge(self.keys.prefix + top, mine))
            return
        keys: set[str] = set()
        for pointer in [record.get("result"), *(record.get("evidence") or {}).values()]:
            if isinstance(pointer, dict) and pointer.get("key"):
                keys.add(str(pointer["key"]))
        folders = {key[: key.index(f"/{tid}/") + len(tid) + 2] for key in keys if f"/{tid}/" in key}
        for folder in sorted(folders):
            report.add_purge(self._purge(folder))
        for key in sorted(k for k in keys if not any(k.startswith(f) for f in folders)):
            report.add_purge(self._purge(key, key.__eq__))

    # ------------------------------------------------------------------ batch rows

    def _user_rows(self, batch_id: str, pseudonym: str) -> ErasureReport:
        """Erase the rows of one merchant user (by pseudonym, as the rows hold it) in one batch."""
        report = ErasureReport("batch_rows", batch_id)
        try:
            meta = self.batches.meta(batch_id)
        except BatchNotFound:
            return report
        size = int(meta["chunk_size"])
        chunks = int(meta.get("total_chunks") or meta.get("submitted_chunks") or 0)
        erased: set[str] = set()
        for chunk_no in range(chunks):
            rows = self.batches.read_chunk(batch_id, chunk_no, size)
            mine = [r for r in rows if r.spec and r.spec.merchant_user_id == pseudonym]
            if not mine:
                continue
            statuses = self.batches.statuses(batch_id, rows[0].seq, len(rows))
            rewritten: list[tuple[int, ItemSpec | None]] = []
            for row, status in zip(rows, statuses, strict=True):
                spec = row.spec
                if spec is None or spec.merchant_user_id != pseudonym:
                    rewritten.append((row.line, spec))
                    continue
                item_id = spec.item_id
                erased.add(item_id)
                report.batch_rows += 1
                # The id stays the same (explicit), the personal fields go.
                rewritten.append((row.line, _erased_spec(spec, item_id)))
                self.batches.forget_item(batch_id, row.seq, item_id)
                if status is ItemStatus.PENDING:
                    detail = {"row": row.row, "line": row.line, "item_id": item_id}
                    self.batches.finish(
                        batch_id,
                        row.seq,
                        item_id,
                        ItemStatus.INVALID,
                        token="",
                        detail={**detail, "code": "Erased", "reason": "erased on request"},
                    )
            self.batches.replace_chunk(batch_id, chunk_no, encode_chunk(rewritten))
        for item_id in sorted(erased):
            report.add(self._item(batch_id, item_id))
        if erased and meta.get("results_key"):
            report.add_purge(self._reexport(batch_id, meta["results_key"]))
        return report

    def _item(self, batch_id: str, item_id: str) -> ErasureReport:
        report = ErasureReport("item", batch_id)
        key = self.keys.batch_item(batch_id, item_id)
        report.add_purge(self._purge(key, key.__eq__))
        ref = item_ref(batch_id, item_id)
        report.redis_keys += int(
            cast("int", self.redis.delete(self.results.record_key(KIND_ITEM, ref)))
        )
        report.leases += self._delete_matching(f"{self.ns}lease:*:{ref}")
        report.stream_events += self._xdel_where(
            lambda f: (
                f.get("id") == ref
                or (f.get("batch_id") == batch_id and f.get("item_id") == item_id)
            )
        )
        return report

    def _reexport(self, batch_id: str, key: str) -> PurgeOutcome:
        """Write the batch's exported results again, without the erased rows' data; the
        earlier versions (which hold them) go."""
        self.objects.put_stream(
            key,
            jsonl_blocks(iter_results(self.batches, self.results, batch_id, objects=self.objects)),
            content_type="application/x-ndjson",
        )
        return self._purge(key, key.__eq__, noncurrent_only=True)

    # ------------------------------------------------------------------ S3 helpers

    def _purge(
        self,
        prefix: str,
        match: Callable[[str], bool] | None = None,
        *,
        noncurrent_only: bool = False,
    ) -> PurgeOutcome:
        if self._replication is None:
            try:
                self._replication = self.objects.bucket_copies().replication
            except StorageError:
                self._replication = ()  # settings not readable: the purge itself still runs
        return self.objects.purge(
            prefix, match=match, noncurrent_only=noncurrent_only, replication=self._replication
        )

    # ------------------------------------------------------------------ webhook events

    def _events(self, scope: str, subject: str) -> ErasureReport:
        """The subject's webhook events: in the outbox, and dead-lettered (under
        ``<scope>:<subject>:<event id>``, or, written by earlier versions, under the event id
        with the event in the payload)."""
        report = ErasureReport("events", subject)
        if self.outbox is not None:
            report.outbox_events += self.outbox.erase(scope, subject)
        prefix = f"{scope}:{subject}:"

        def mine(ref: str) -> bool:
            if ref.startswith(prefix):
                return True
            if not ref.startswith("evt_"):
                return False
            entry = self.deadletters.get(KIND_WEBHOOK, ref)
            notice = entry.payload.get("notice") if entry is not None else None
            return (
                isinstance(notice, dict)
                and notice.get("subject") == subject
                and SCOPES.get(str(notice.get("type", "")).partition(".")[0]) == scope
            )

        report.dead_letters += self._remove_dead_letters(KIND_WEBHOOK, mine)
        return report

    # ------------------------------------------------------------------ Redis helpers

    def _delete_matching(self, pattern: str) -> int:
        keys = list(self.redis.scan_iter(match=pattern, count=500))
        return int(cast("int", self.redis.delete(*keys))) if keys else 0

    def _remove_dead_letters(self, kind: str, match: Callable[[str], bool]) -> int:
        index = f"{self.ns}dlq:kind:{kind}"
        refs = [m.decode() for m in cast("list[bytes]", self.redis.zrange(index, 0, -1))]
        return sum(1 for ref in refs if match(ref) and self.deadletters.remove(kind, ref))

    def _xdel_where(self, match: Callable[[dict[str, str]], bool]) -> int:
        """Delete every results-stream entry whose fields ``match`` (scans the stream)."""
        stream = self.results.stream
        start = "-"
        removed = 0
        while True:
            page = cast(
                "list[tuple[bytes, dict[bytes, bytes]]]",
                self.redis.xrange(stream, min=start, max="+", count=_STREAM_PAGE),
            )
            if not page:
                return removed
            doomed = [
                entry_id
                for entry_id, fields in page
                if match({k.decode(): v.decode("utf-8", "replace") for k, v in fields.items()})
            ]
            if doomed:
                removed += int(cast("int", self.redis.xdel(stream, *doomed)))
            last = page[-1][0].decode()
            start = f"({last}"
            if len(page) < _STREAM_PAGE:
                return removed

    def _audit(self, report: ErasureReport, by: str) -> None:
        counts = {k: str(v) for k, v in report.as_dict().items() if k != "remaining"}
        fields: dict[Any, Any] = {
            "at": f"{self._clock():.3f}",
            "by": (by or "unknown")[:64],
            **counts,
            # How many copies remain, not which: their keys hold transaction ids.
            "remaining": str(len(report.remaining)),
        }
        self.redis.xadd(self.audit_stream, fields, maxlen=AUDIT_MAXLEN, approximate=True)


def _erased_spec(spec: ItemSpec, item_id: str) -> ItemSpec:
    """The row without its personal fields; the explicit id keeps the item's id unchanged."""
    return replace(spec, source=ERASED_SOURCE, merchant_user_id=None, explicit_id=item_id)
