"""How an item ends: result record and event, status byte and counters, claim, alerts.

Every outcome goes to three places at once: the row's status (and the batch counters) in the
batch store, an event on ``idv:results``, and a metric. A ``done`` row also gets its result:
the OCR fields (personal data) go only to an SSE-encrypted S3 document
(``batches/<batch>/items/<item>.json``, ``ObjectKeys.batch_item``); the Redis record keeps
outcome, ids and a pointer ``result: {key, sha256, size}`` to it. Document first, then the
record with its event (``ResultStore.put_and_publish``), *before* the row is marked done, so a
crash in between is healed by the next attempt, which finds the record (or rewrites the same
document under the same key).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from worker.batch.ids import merchant_biz_id
from worker.batch.model import ItemStatus, StoredRow
from worker.batch.store import KEEP_CLAIM, BatchStore
from worker.cloudauth.errors import AccountError
from worker.cloudauth.models import DocOcrResult
from worker.cloudauth.subcodes import sub_code_fields
from worker.keys import KIND_ITEM, ObjectKeys, item_ref
from worker.observability import Metrics, account_code, report_to_sentry
from worker.storage import ObjectStore
from worker.stores import ResultStore

log = logging.getLogger("idv.batch")

_IMAGE_KEYS = ("idImage", "idBackImage")
DOCUMENT_VERSION = 1
_FLUSH_EVERY = 25


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One row being processed by one chunk task (``token`` names the attempt)."""

    batch_id: str
    row: StoredRow
    item_id: str
    token: str

    @property
    def ref(self) -> str:
        """The item's record ref ``<batch>:<item>``."""
        return item_ref(self.batch_id, self.item_id)

    def detail(self, code: str, reason: str, **more: Any) -> dict[str, Any]:
        """The stored reason of a non-done outcome."""
        return {
            "row": self.row.row,
            "line": self.row.line,
            "item_id": self.item_id,
            "code": code,
            "reason": reason,
            **{k: v for k, v in more.items() if v is not None},
        }


class Outcomes:
    """Writes the final state of items (see the module docstring)."""

    def __init__(
        self,
        store: BatchStore,
        results: ResultStore,
        metrics: Metrics,
        objects: ObjectStore,
        keys: ObjectKeys,
    ) -> None:
        self.store = store
        self.results = results
        self.metrics = metrics
        self.objects = objects
        self.keys = keys
        # One metrics write per few items rather than per item: the batch's own counters
        # are exact; these only feed dashboards.
        self._pending: dict[ItemStatus, int] = {}

    def done(self, item: WorkItem, product_code: str, result: DocOcrResult) -> None:
        """The provider answered (any sub code): store record + event, mark the row done."""
        spec = item.row.spec
        assert spec is not None
        ext = result.ext_id_info.wire() if result.ext_id_info is not None else None
        if ext is not None:
            for key in _IMAGE_KEYS:
                ext.pop(key, None)
        completed_at = round(time.time(), 3)
        biz_id = merchant_biz_id(item.batch_id, item.item_id)
        document = {
            "version": DOCUMENT_VERSION,
            "batchId": item.batch_id,
            "itemId": item.item_id,
            "merchantBizId": biz_id,
            "requestId": result.request_id,
            "transactionId": result.transaction_id,
            "passed": result.passed,
            "subCode": result.sub_code,
            "extIdInfo": ext,
            "completedAt": completed_at,
        }
        body = json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        stored = self.objects.put_bytes(
            self.keys.batch_item(item.batch_id, item.item_id),
            body.encode(),
            content_type="application/json",
        )
        record = {
            "batch_id": item.batch_id,
            "item_id": item.item_id,
            "row": item.row.row,
            "line": item.row.line,
            "status": ItemStatus.DONE.value,
            "doc_type": spec.doc_type,
            "card_side": spec.card_side,
            "product_code": product_code,
            "merchant_biz_id": biz_id,
            "request_id": result.request_id,
            "transaction_id": result.transaction_id,
            "passed": result.passed,
            "sub_code": result.sub_code,
            **sub_code_fields(result.sub_code),
            "result": {"key": stored.key, "sha256": stored.sha256, "size": stored.size},
            "completed_at": completed_at,
        }
        event = {
            "type": "batch_item",
            "status": ItemStatus.DONE.value,
            "batch_id": item.batch_id,
            "item_id": item.item_id,
            "row": item.row.row,
            "passed": result.passed,
            "sub_code": result.sub_code,
            **sub_code_fields(result.sub_code),
            "transaction_id": result.transaction_id,
        }
        self.results.put_and_publish(KIND_ITEM, item.ref, record, event, create_only=True)
        self.store.finish(
            item.batch_id,
            item.row.seq,
            item.item_id,
            ItemStatus.DONE,
            token=item.token,
            sub_code=result.sub_code,
            called=True,
        )
        self.count(ItemStatus.DONE)

    def recover(self, item: WorkItem, claim: str) -> None:
        """An earlier attempt claimed the item: done if its answer was stored, else uncertain."""
        record = self.results.get_record(KIND_ITEM, item.ref)
        if record is not None:
            sub = record.get("sub_code")
            self.store.finish(
                item.batch_id,
                item.row.seq,
                item.item_id,
                ItemStatus.DONE,
                token="",
                sub_code=str(sub) if sub else None,
            )
            return
        since = claim.split("|")[1] if claim.count("|") >= 2 else None
        self.uncertain(
            item,
            "an earlier attempt sent the call and stopped before storing the answer",
            claimed_at=float(since) if since else None,
        )

    def uncertain(self, item: WorkItem, reason: str, **more: Any) -> None:
        """A call may have been billed and its answer is lost: never re-sent automatically."""
        detail = item.detail("Uncertain", reason, **more)
        # Keep the claim: it is the evidence that a billed call may exist.
        changed = self.store.finish(
            item.batch_id,
            item.row.seq,
            item.item_id,
            ItemStatus.UNCERTAIN,
            token=KEEP_CLAIM,
            detail=detail,
        )
        if changed:
            self._publish(item, ItemStatus.UNCERTAIN, "Uncertain")
            self.count(ItemStatus.UNCERTAIN)
            log.warning("batch %s row %d is uncertain: %s", item.batch_id, item.row.row, reason)

    def invalid(self, item: WorkItem, code: str, reason: str) -> None:
        """The row or its image is unfit: reported with its reason, never sent."""
        self.store.finish(
            item.batch_id,
            item.row.seq,
            item.item_id,
            ItemStatus.INVALID,
            token=item.token,
            detail=item.detail(code, reason),
        )
        self._publish(item, ItemStatus.INVALID, code)
        self.count(ItemStatus.INVALID)

    def fail(self, item: WorkItem, code: str, reason: str, **more: Any) -> None:
        """The provider refused the item (or retries ran out): failed, retryable on request."""
        self.store.finish(
            item.batch_id,
            item.row.seq,
            item.item_id,
            ItemStatus.FAILED,
            token=item.token,
            detail=item.detail(code, reason, **more),
            called=True,
        )
        self._publish(item, ItemStatus.FAILED, code)
        self.count(ItemStatus.FAILED)

    def drop_claim(self, item: WorkItem) -> None:
        """Our call was answered without being processed (or never left): forget the claim."""
        self.store.finish(
            item.batch_id, item.row.seq, item.item_id, ItemStatus.PENDING, token=item.token
        )

    def _publish(self, item: WorkItem, status: ItemStatus, code: str) -> None:
        self.results.publish(
            {
                "type": "batch_item",
                "kind": KIND_ITEM,
                "id": item.ref,
                "status": status.value,
                "batch_id": item.batch_id,
                "item_id": item.item_id,
                "row": item.row.row,
                "code": code[:64],
            }
        )

    def count(self, status: ItemStatus) -> None:
        """Count an outcome in the metrics (written every ``_FLUSH_EVERY`` items or on flush)."""
        self._pending[status] = self._pending.get(status, 0) + 1
        if sum(self._pending.values()) >= _FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """Write the counted outcomes to the metrics store."""
        pending, self._pending = self._pending, {}
        for status, n in pending.items():
            self.metrics.incr("idv_batch_items", n, outcome=status.value)

    def pause_for_account(self, batch_id: str, exc: AccountError) -> float | None:
        """Pause the batch (once) and alert: every further call would fail the same way.

        Returns when the pause was applied (None: it was paused already)."""
        code = _safe(exc.code)
        at = self.store.clock()
        applied, _state = self.store.transition(
            batch_id,
            "pause",
            reason=f"provider refused the account: {exc.code}",
            by="provider",
            at=at,
        )
        if not applied:
            return None
        self.metrics.incr("idv_batch_paused", reason=account_code(code))
        self.metrics.incr("idv_account_errors", flow="batch", code=account_code(code))
        report_to_sentry(
            "batch paused: the provider refused the account", flow="batch", code=code, kind="batch"
        )
        log.error("batch %s paused: provider answered %s", batch_id, exc.code)
        return at


def _safe(code: str) -> str:
    return "".join(c for c in code if c.isalnum() or c in "._-")[:64] or "unknown"
