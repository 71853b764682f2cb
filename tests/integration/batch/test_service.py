"""The batch flow in process on real servers: Redis, the emulator, moto S3.

Chunks are run one by one from the messages the batch code sends (``tests.fixtures.batch``),
so each test controls exactly when work happens; the Celery path is covered by
``test_batch_e2e``.
"""

from __future__ import annotations

import http.server
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.fixtures.batch import Rig, write_manifest
from tests.fixtures.servers import free_port
from worker.batch import (
    BatchAPI,
    BatchState,
    BatchStateError,
    ChunkOutcome,
    ItemStatus,
    SourcePolicy,
    merchant_biz_id,
)
from worker.emulator.samples import generate_samples
from worker.keys import KIND_ITEM, ObjectKeys, item_ref

_MANIFEST_COLUMNS = ("image", "doc_type", "card_side", "spoof")


def _samples(tmp_path: Path, good: int, bad: int = 0) -> list[dict[str, Any]]:
    rows = generate_samples(tmp_path / "img", good, bad=bad, seed=7)
    return [{k: v for k, v in r.as_dict().items() if k in _MANIFEST_COLUMNS and v} for r in rows]


def _served(rig: Rig) -> int:
    return rig.served()


def test_batch_runs_to_completion_with_results_everywhere(rig: Rig, tmp_path: Path) -> None:
    rows = _samples(tmp_path, 40, bad=5)
    manifest = write_manifest(tmp_path / "m.jsonl", rows)
    submitted = rig.api.submit(manifest)
    assert submitted.created
    assert submitted.total_rows == 45
    assert submitted.chunks == 5
    assert len(rig.enqueuer.chunk_messages) == 5
    assert rig.enqueuer.watchdogs  # armed on submission

    outcomes = rig.run_queue()
    assert outcomes == [ChunkOutcome.COMPLETED] * 5

    progress = rig.api.status(submitted.batch_id)
    assert progress.state is BatchState.COMPLETED
    assert progress.counts[ItemStatus.DONE] == 40
    assert progress.counts[ItemStatus.INVALID] == 5
    assert progress.remaining == 0
    # Samples 5, 17 and 29 carry sub codes 211/212/213: answers, not errors.
    assert progress.sub_codes == {"200": 37, "211": 1, "212": 1, "213": 1}
    assert _served(rig) == 40

    # Every invalid row is reported with its row number and a reason; none was sent.
    problems = list(rig.api.problems(submitted.batch_id))
    assert [p["row"] for p in problems] == [41, 42, 43, 44, 45]
    codes = {p["code"] for p in problems}
    assert codes <= {"ImageDimensions", "ImageTooLarge", "ImageFormat", "ImageUnreadable"}
    assert all(p["reason"] for p in problems)

    # Per-item record and event; the sub-code rows are done with Passed=N.
    record = rig.api.result_store.get_record(
        KIND_ITEM, item_ref(submitted.batch_id, next(iter(_item_ids(rig, submitted.batch_id))))
    )
    assert record is not None
    assert record["passed"] == "Y"
    assert record["sub_code"] == "200"
    assert record["merchant_biz_id"] == merchant_biz_id(submitted.batch_id, record["item_id"])
    # The OCR fields are not in Redis: only a pointer to the encrypted S3 document.
    assert "ext_id_info" not in record
    document = rig.objects.head(record["result"]["key"])
    assert document is not None
    assert document.encryption == "AES256"
    assert document.sha256 == record["result"]["sha256"]
    events = rig.redis.xrange("idv:results")
    kinds = [e[1][b"status"].decode() for e in events if e[1][b"type"] == b"batch_item"]
    assert kinds.count("done") == 40
    assert kinds.count("invalid") == 5
    assert any(e[1][b"type"] == b"batch" for e in events)

    # The results as JSONL in S3, one line per row, in manifest order.
    lines = rig.results_object(submitted.batch_id)
    assert [line["row"] for line in lines] == list(range(1, 46))
    by_sub = {line.get("sub_code") for line in lines if line["status"] == "done"}
    assert by_sub == {"200", "211", "212", "213"}
    assert all("idImage" not in json.dumps(line) for line in lines)
    # Each done row carries the sub-code catalogue's view of its code, as do records and events.
    categories = {
        line["sub_code"]: (line["sub_code_category"], line["next_step"], line["sub_code_billed"])
        for line in lines
        if line["status"] == "done"
    }
    assert categories == {
        "200": ("passed", "accept", True),
        "211": ("image_quality", "recapture_document", True),
        "212": ("document_fraud", "manual_review", True),
        "213": ("document_type", "check_doc_type_and_recapture", True),
    }
    assert record["sub_code_category"] == "passed"
    assert record["sub_code_known"] is True
    done_events = [e[1] for e in events if e[1].get(b"status") == b"done"]
    assert {e[b"sub_code_category"] for e in done_events} == {
        b"passed",
        b"image_quality",
        b"document_fraud",
        b"document_type",
    }


def _item_ids(rig: Rig, batch_id: str) -> list[str]:
    return [r["item_id"] for r in rig.api.results(batch_id, only=[ItemStatus.DONE])]


def test_resubmitting_the_same_manifest_resumes_without_duplicates(
    rig: Rig, tmp_path: Path
) -> None:
    manifest = write_manifest(tmp_path / "m.csv", _samples(tmp_path, 25), fmt="csv")
    first = rig.api.submit(manifest)
    rig.service.process_chunk(*rig.enqueuer.chunk_messages.popleft())
    again = rig.api.submit(manifest)
    assert again.batch_id == first.batch_id
    assert not again.created
    assert again.enqueued == 0  # the other chunks are still queued: nothing to resend
    rig.run_queue()
    assert rig.api.status(first.batch_id).counts[ItemStatus.DONE] == 25
    third = rig.api.submit(manifest)
    assert third.state is BatchState.COMPLETED
    assert third.enqueued == 0
    rig.run_queue()
    assert _served(rig) == 25
    assert rig.api.list()[0].batch_id == first.batch_id


def test_identical_rows_are_one_item_billed_once(rig: Rig, tmp_path: Path) -> None:
    rows = _samples(tmp_path, 3)
    rows = [
        rows[0],
        rows[1],
        rows[0],
        {**rows[2], "item_id": "doc-7"},
        {**rows[1], "item_id": "doc-7"},
    ]
    batch = rig.api.submit(write_manifest(tmp_path / "m.jsonl", rows)).batch_id
    rig.run_queue()
    progress = rig.api.status(batch)
    assert progress.counts[ItemStatus.DONE] == 3
    assert progress.counts[ItemStatus.DUPLICATE] == 2
    assert _served(rig) == 3
    dups = list(rig.api.results(batch, only=[ItemStatus.DUPLICATE]))
    assert [(d["row"], d["reason"]) for d in dups] == [
        (3, "same item as row 1"),
        (5, "same item as row 4"),
    ]


def test_forbidden_pauses_the_batch_instead_of_failing_items(rig: Rig, tmp_path: Path) -> None:
    batch = rig.api.submit(write_manifest(tmp_path / "m.jsonl", _samples(tmp_path, 30))).batch_id
    rig.emulator.set_faults(forbidden_code="Forbidden.AccountAccessDenied")
    outcomes = rig.run_queue()
    assert outcomes[0] is ChunkOutcome.STOPPED
    assert set(outcomes[1:]) == {ChunkOutcome.STOPPED}
    progress = rig.api.status(batch)
    assert progress.state is BatchState.PAUSED
    assert progress.pause_reason is not None
    assert "Forbidden.AccountAccessDenied" in progress.pause_reason
    assert progress.counts[ItemStatus.FAILED] == 0
    assert progress.remaining == 30
    assert _served(rig) == 0
    assert not rig.store.claims(batch)  # the refused call left no claim behind

    rig.emulator.set_faults(forbidden_code=None)
    rig.api.resume(batch)
    assert len(rig.enqueuer.chunk_messages) == 3
    rig.run_queue()
    progress = rig.api.status(batch)
    assert progress.state is BatchState.COMPLETED
    assert progress.counts[ItemStatus.DONE] == 30
    assert _served(rig) == 30


def test_pause_resume_and_cancel(rig: Rig, tmp_path: Path) -> None:
    batch = rig.api.submit(write_manifest(tmp_path / "m.jsonl", _samples(tmp_path, 40))).batch_id
    rig.service.process_chunk(*rig.enqueuer.chunk_messages.popleft())
    assert rig.api.pause(batch).state is BatchState.PAUSED
    assert rig.api.pause(batch).state is BatchState.PAUSED  # idempotent
    assert rig.run_queue() == [ChunkOutcome.STOPPED] * 3
    assert _served(rig) == 10

    rig.api.resume(batch)
    assert sorted(c for _, c in rig.enqueuer.chunk_messages) == [1, 2, 3]
    rig.service.process_chunk(*rig.enqueuer.chunk_messages.popleft())
    assert rig.api.cancel(batch).state is BatchState.CANCELLED
    assert rig.run_queue() == [ChunkOutcome.STOPPED] * 2
    progress = rig.api.status(batch)
    assert progress.counts[ItemStatus.DONE] == 20
    assert progress.remaining == 20
    assert _served(rig) == 20
    with pytest.raises(BatchStateError):
        rig.api.resume(batch)
    with pytest.raises(BatchStateError):
        rig.api.retry_failed(batch)


def test_a_claim_left_by_a_dead_worker_makes_the_item_uncertain(rig: Rig, tmp_path: Path) -> None:
    batch = rig.api.submit(write_manifest(tmp_path / "m.jsonl", _samples(tmp_path, 3))).batch_id
    rows = rig.store.read_chunk(batch, 0, 10)
    assert all(r.spec is not None for r in rows)
    first, second = rows[0], rows[1]
    assert first.spec is not None
    assert second.spec is not None
    # A worker claimed row 1 (its request left) and died before storing the answer.
    assert rig.store.claim(batch, first.seq, first.spec.item_id, "deadbeef") == "ok"
    # Another claimed row 2, stored the answer, and died before marking the row done.
    assert rig.store.claim(batch, second.seq, second.spec.item_id, "cafef00d") == "ok"
    ref = item_ref(batch, second.spec.item_id)
    rig.api.result_store.put_record(KIND_ITEM, ref, {"status": "done", "sub_code": "200"})

    rig.run_queue()
    progress = rig.api.status(batch)
    assert progress.counts[ItemStatus.UNCERTAIN] == 1
    assert progress.counts[ItemStatus.DONE] == 2
    assert _served(rig) == 1  # only row 3 was sent
    [uncertain] = list(rig.api.results(batch, only=[ItemStatus.UNCERTAIN]))
    assert uncertain["row"] == 1
    assert uncertain["code"] == "Uncertain"

    # Not re-sent by a plain retry; re-sent (once) when explicitly asked.
    assert rig.api.retry_failed(batch).reset_rows == 0
    rig.run_queue()
    assert _served(rig) == 1
    retried = rig.api.retry_failed(batch, include_uncertain=True)
    assert retried.reset_rows == 1
    assert retried.enqueued == 1
    rig.run_queue()
    progress = rig.api.status(batch)
    assert progress.counts[ItemStatus.DONE] == 3
    assert progress.counts[ItemStatus.UNCERTAIN] == 0
    assert progress.state is BatchState.COMPLETED
    assert _served(rig) == 2


def test_s3_and_http_sources(rig: Rig, tmp_path: Path) -> None:
    samples = _samples(tmp_path, 3)
    data = [Path(r["image"]).read_bytes() for r in samples]
    bucket = rig.objects.bucket
    rig.objects.client.put_object(Bucket=bucket, Key="imports/a.jpg", Body=data[0])
    # Someone else's stored ID card in the worker's own bucket: never a manifest source.
    stored = "evidence/2026/05/01/hk0000someone/id-front.jpg"
    rig.objects.client.put_object(Bucket=bucket, Key=stored, Body=data[2])

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/img/b"):
                body = data[1]
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_response(404)
                self.send_header("content-length", "0")
                self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    # The image server is on loopback: allowed here by prefix and for private addresses.
    allowed = rig.settings.replace(
        batch_allowed_url_prefixes=[f"{base}/img/"], batch_allow_private_urls=True
    )
    rig.service.reader.policy = SourcePolicy.from_settings(
        allowed.sources,
        own_bucket=allowed.storage.s3_bucket,
        object_keys=ObjectKeys(allowed.storage.s3_prefix),
    )
    try:
        rows = [
            {**samples[0], "image": f"s3://{bucket}/imports/a.jpg"},
            {**samples[1], "image": f"{base}/img/b?X-Amz-Signature=secret"},
            {**samples[2], "image": f"{base}/img/missing.jpg"},
            {**samples[2], "image": f"s3://{bucket}/imports/missing.jpg"},
            {**samples[2], "image": f"s3://{bucket}/{stored}"},
            {**samples[2], "image": f"s3://{bucket}/imports/../{stored}"},
        ]
        # Submitted under the same allowances (refused URLs are dropped at submission).
        api = BatchAPI(
            allowed.batch,
            store=rig.store,
            result_store=rig.api.result_store,
            policy=rig.service.reader.policy,
            subjects=rig.api.subjects,
            quotas=rig.api.quotas,
            object_keys=rig.api.object_keys,
            enqueuer=rig.enqueuer,
            objects=rig.objects,
        )
        batch = api.submit(write_manifest(tmp_path / "m.jsonl", rows)).batch_id
        rig.run_queue()
    finally:
        server.shutdown()
        server.server_close()
    progress = rig.api.status(batch)
    assert progress.counts[ItemStatus.DONE] == 2
    assert progress.counts[ItemStatus.INVALID] == 4
    exported = list(rig.api.results(batch))
    assert exported[1]["source"] == f"{base}/img/b"  # the presigned query is not shown
    assert "secret" not in json.dumps(exported)
    assert [e["code"] for e in exported[2:]] == [
        "ImageNotFound",
        "ImageNotFound",
        "SourceKeyNotAllowed",
        "SourceKeyNotAllowed",
    ]
    assert _served(rig) == 2  # the stored ID card was never sent to the provider


def test_rows_invalid_at_submission_are_reported_and_never_sent(rig: Rig, tmp_path: Path) -> None:
    good = _samples(tmp_path, 2)
    png = io.BytesIO()
    Image.new("RGB", (320, 240)).save(png, "PNG")
    named_jpg = tmp_path / "looks-like.jpg"
    named_jpg.write_bytes(png.getvalue())  # a PNG named .jpg is fine: format by content
    rows = [
        good[0],
        {"image": "x.jpg", "doc_type": "12345678"},
        {"image": "", "doc_type": "01000000"},
        {"image": str(named_jpg), "doc_type": "01000000"},
        {"image": "ftp://host/x.jpg", "doc_type": "01000000"},
        {**good[1], "id_threshold": 7},
        {"image": "relative/missing.jpg", "doc_type": "01000000"},
    ]
    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, rows)
    with manifest.open("a", encoding="utf-8") as handle:
        handle.write("{not json\n")
    result = rig.api.submit(manifest)
    assert result.total_rows == 8
    assert [r for r, _, _ in result.invalid_sample] == [2, 3, 5, 6, 8]
    rig.run_queue()
    problems = {p["row"]: p for p in rig.api.problems(result.batch_id)}
    assert sorted(problems) == [2, 3, 5, 6, 7, 8]
    assert "DocType" in problems[2]["reason"]
    assert problems[7]["code"] == "ImageNotFound"
    assert problems[8]["reason"] == "not valid JSON"
    assert rig.api.status(result.batch_id).counts[ItemStatus.DONE] == 2
    assert _served(rig) == 2


@pytest.fixture
def exported(rig: Rig, tmp_path: Path) -> Iterator[tuple[Rig, str]]:
    batch = rig.api.submit(write_manifest(tmp_path / "m.jsonl", _samples(tmp_path, 6, bad=1)))
    rig.run_queue()
    return rig, batch.batch_id


def test_export_csv_flattens_ocr_fields(exported: tuple[Rig, str]) -> None:
    rig, batch = exported
    out = io.StringIO()
    assert rig.api.export(batch, out, fmt="csv") == 7
    import csv

    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len(rows) == 7
    done = [r for r in rows if r["status"] == "done"]
    assert [r["passed"] for r in done] == ["Y"] * 5 + ["N"]  # row 6 carries sub code 211
    assert done[-1]["sub_code"] == "211"
    assert all(r["ocr_name"] or r["ocr_surname"] for r in done[:5])
    assert all(r["transaction_id"] and r["request_id"] for r in done)
    assert rows[-1]["status"] == "invalid"
    assert rows[-1]["reason"]
    assert "ocr_extra" in rows[0]
    assert "image" not in "".join(rows[0])
    only = io.StringIO()
    assert rig.api.export(batch, only, fmt="jsonl", only=[ItemStatus.INVALID]) == 1
    assert json.loads(only.getvalue())["row"] == 7


class _DiesOnThirdChunk:
    """An enqueuer whose process 'dies' while sending the third chunk message."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sent = 0

    def chunks(self, batch_id: str, chunk_nos: Any, *, countdown: float = 0.0) -> int:
        for chunk_no in chunk_nos:
            if self.sent == 2:
                raise ConnectionError("submitter died")
            self.sent += self.inner.chunks(batch_id, [chunk_no], countdown=countdown)
        return self.sent

    def watchdog(self, batch_id: str, countdown: float) -> None:
        self.inner.watchdog(batch_id, countdown)

    def finalize(self, batch_id: str) -> None:
        self.inner.finalize(batch_id)


def test_an_interrupted_submission_continues_where_it_stopped(rig: Rig, tmp_path: Path) -> None:
    from worker.batch import Submitter

    manifest = write_manifest(tmp_path / "m.jsonl", _samples(tmp_path, 45))
    dying = Submitter(
        rig.store,
        _DiesOnThirdChunk(rig.enqueuer),
        rig.settings.batch,
        policy=rig.api.policy,
        subjects=rig.api.subjects,
    )
    with pytest.raises(ConnectionError):
        dying.submit(manifest)
    assert [c for _, c in rig.enqueuer.chunk_messages] == [0, 1]
    rig.run_queue()
    again = rig.api.submit(manifest)
    assert not again.created
    assert again.total_rows == 45
    # Chunk 2 was stored but its message never left: sent now, with the rest.
    assert [c for _, c in rig.enqueuer.chunk_messages] == [2, 3, 4]
    rig.run_queue()
    progress = rig.api.status(again.batch_id)
    assert progress.state is BatchState.COMPLETED
    assert progress.counts[ItemStatus.DONE] == 45
    assert _served(rig) == 45


def test_watchdog_retakes_the_chunk_of_a_dead_worker(rig: Rig, tmp_path: Path) -> None:
    batch = rig.api.submit(write_manifest(tmp_path / "m.jsonl", _samples(tmp_path, 20))).batch_id
    # A worker took chunk 0's message and died holding its lease.
    _, chunk = rig.enqueuer.chunk_messages.popleft()
    assert rig.store.acquire_chunk(batch, chunk, "dead-worker", 0.3) == 1
    assert rig.control.watchdog(batch) == rig.settings.batch.batch_watchdog_interval_s
    assert rig.control.watchdog(batch) is None  # a second chain right after: it ends
    assert [c for _, c in rig.enqueuer.chunk_messages] == [1]  # chunk 0 is still leased
    rig.run_queue()
    assert rig.api.status(batch).state is BatchState.RUNNING
    from tests.fixtures.servers import wait_until

    def retaken() -> bool:
        rig.control.watchdog(batch)
        return [c for _, c in rig.enqueuer.chunk_messages] == [0]

    wait_until(retaken, timeout=5)
    rig.run_queue()  # the last chunk to complete triggers the export at once
    assert rig.api.status(batch).state is BatchState.COMPLETED
    assert rig.control.watchdog(batch) is None  # stops once the batch is done
    assert _served(rig) == 20


def test_a_batch_whose_messages_were_lost_is_driven_again_by_the_sweep(
    rig: Rig, tmp_path: Path
) -> None:
    rows = _samples(tmp_path, 20)
    submitted = rig.api.submit(write_manifest(tmp_path / "m.jsonl", rows))
    rig.service.process_chunk(submitted.batch_id, 0)
    # The other chunk messages died with a node (held, unacknowledged): nothing will run them.
    rig.enqueuer.chunk_messages.clear()
    now = rig.api.status(submitted.batch_id).updated_at
    assert rig.control.sweep_stalled(now=now + 1) == []  # not stalled yet
    later = now + max(2 * rig.settings.batch.batch_lease_s, 60.0) + 1
    assert rig.control.sweep_stalled(now=later) == [submitted.batch_id]
    assert sorted(c for _, c in rig.enqueuer.chunk_messages) == [1]
    rig.run_queue()
    assert rig.api.status(submitted.batch_id).state is BatchState.COMPLETED
    assert _served(rig) == 20  # nothing billed twice
