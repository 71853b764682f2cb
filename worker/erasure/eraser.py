"""``Eraser``: what goes for each kind of subject (see ``worker.erasure``).

It decides what belongs to a transaction, a merchant user's batch rows or a batch; the S3
objects go through ``ObjectPurger``, the Redis data through ``KeyspaceEraser``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import cast

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
from worker.erasure.keyspace import KeyspaceEraser
from worker.erasure.objects import ObjectPurger
from worker.erasure.report import ErasureReport
from worker.jobs.outbox import Outbox
from worker.keys import KIND_ITEM, KIND_TX, ObjectKeys, item_ref, parse_transaction_id, validate_id
from worker.storage import PurgeOutcome, S3ObjectStore
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
ERASED_SOURCE = "erased:"


class Eraser:
    """Erases subjects (see ``worker.erasure``); dependencies are passed in."""

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
        self._s3 = ObjectPurger(objects, object_keys)
        self._redis = KeyspaceEraser(
            redis_client,
            namespace,
            results=results,
            deadletters=deadletters,
            outbox=outbox,
            clock=clock,
        )

    @property
    def audit_stream(self) -> str:
        """``<ns>audit``: one entry per erasure, without personal data."""
        return self._redis.audit_stream

    # ------------------------------------------------------------------ entry points

    def erase_transaction(self, transaction_id: str, *, by: str) -> ErasureReport:
        """Erase one onboarding transaction."""
        tid = parse_transaction_id(transaction_id)
        report = self._transaction(tid)
        report.redis_keys += self.subjects.drop_member(KIND_SUBJECT_TX, tid)
        self._redis.audit(report, by)
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
        self._redis.audit(report, by)
        return report

    def erase_batch(self, batch_id: str, *, by: str) -> ErasureReport:
        """Erase a whole batch."""
        batch = validate_id(batch_id, "batch_id")
        report = ErasureReport("batch", batch)
        report.add_purge(self._s3.purge(self.keys.batch_prefix(batch)))
        report.redis_keys += self.batches.delete(batch)
        report.redis_keys += self._redis.delete_matching(f"{self.ns}result:{KIND_ITEM}:{batch}:*")
        report.leases += self._redis.delete_matching(f"{self.ns}lease:*:{batch}:*")
        report.leases += self._redis.delete_matching(f"{self.ns}lease:*:{batch}")
        for kind in BATCH_DEAD_LETTER_KINDS:
            report.dead_letters += self._redis.remove_dead_letters(
                kind, lambda ref: ref == batch or ref.startswith(f"{batch}:")
            )
        report.add(self._redis.events("batch", batch))
        report.stream_events += self._redis.xdel_where(
            lambda f: (
                f.get("batch_id") == batch
                or f.get("id") == batch
                or f.get("id", "").startswith(f"{batch}:")
            )
        )
        report.redis_keys += self.subjects.drop_member(KIND_SUBJECT_BATCH, batch)
        self._redis.audit(report, by)
        return report

    # ------------------------------------------------------------------ transactions

    def _transaction(self, tid: str) -> ErasureReport:
        report = ErasureReport("transaction", self.subjects.pseudonyms.transaction(tid))
        record = self.results.get_record(KIND_TX, tid)
        self._s3.transaction(tid, record, report)
        record_key = self.results.record_key(KIND_TX, tid)
        report.redis_keys += int(cast("int", self.redis.delete(record_key)))
        report.leases += self._redis.delete_matching(f"{self.ns}lease:*:{tid}")
        for kind in TX_DEAD_LETTER_KINDS:
            if self.deadletters.remove(kind, tid):
                report.dead_letters += 1
        report.add(self._redis.events("tx", tid))
        report.stream_events += self._redis.xdel_where(
            lambda f: f.get("id") == tid or f.get("transaction_id") == tid
        )
        if self.ledger_eraser is not None:
            report.ledger_entries += self.ledger_eraser(KIND_TX, tid)
        return report

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
        report.add_purge(self._s3.purge(key, key.__eq__))
        ref = item_ref(batch_id, item_id)
        report.redis_keys += int(
            cast("int", self.redis.delete(self.results.record_key(KIND_ITEM, ref)))
        )
        report.leases += self._redis.delete_matching(f"{self.ns}lease:*:{ref}")
        report.stream_events += self._redis.xdel_where(
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
        return self._s3.purge(key, key.__eq__, noncurrent_only=True)


def _erased_spec(spec: ItemSpec, item_id: str) -> ItemSpec:
    """The row without its personal fields; the explicit id keeps the item's id unchanged."""
    return replace(spec, source=ERASED_SOURCE, merchant_user_id=None, explicit_id=item_id)
