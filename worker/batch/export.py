"""Export of a batch's results, one line per manifest row, in manifest order (streamed).

JSONL keeps the provider's ``ExtIdInfo`` nested; CSV flattens it into fixed columns (OCR
fields as ``ocr_<field>``, the back side as ``ocr_back_<field>``, anything unknown as JSON in
``ocr_extra``) so the header can be written before the first row. Images are never exported.
An http(s) source is shown without its query string (it may be a presigned link).

The OCR fields of a done row live only in its encrypted S3 document (the Redis record points
at it, ``worker.batch.outcomes``): the export reads the documents of one chunk at a time, a
few in parallel, so memory stays bounded by a chunk whatever the batch's size. A row whose
document is gone (erased, or the record expired) is exported with its reason and no fields.
Each result row carries the sub-code catalogue's view of its code (``worker.cloudauth.subcodes``):
``sub_code_known``, ``sub_code_category``, ``sub_code_billed``, ``next_step``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TextIO, cast
from urllib.parse import urlsplit, urlunsplit

from worker.batch.model import ItemStatus
from worker.batch.store import BatchStore
from worker.cloudauth.models import OcrIdBackInfo, OcrIdInfo
from worker.cloudauth.subcodes import sub_code_fields
from worker.keys import KIND_ITEM, item_ref
from worker.storage import ObjectNotFound, ObjectStore
from worker.stores import ResultStore

MAX_DOCUMENT_BYTES = 1024 * 1024
_FETCHERS = 8

BASE_COLUMNS = (
    "row",
    "line",
    "item_id",
    "status",
    "source",
    "doc_type",
    "card_side",
    "passed",
    "sub_code",
    "sub_code_known",
    "sub_code_category",
    "sub_code_billed",
    "next_step",
    "transaction_id",
    "request_id",
    "code",
    "reason",
    "spoof_result",
    "spoof_type",
    "id_face_quality_score",
    "ocr_id_passed",
)


def _aliases(model: type[OcrIdInfo] | type[OcrIdBackInfo]) -> list[tuple[str, str]]:
    """(wire name, snake name) of a model's fields."""
    return [(f.alias or name, name) for name, f in model.model_fields.items()]


_OCR_FIELDS = _aliases(OcrIdInfo)
_BACK_FIELDS = _aliases(OcrIdBackInfo)
CSV_COLUMNS = (
    *BASE_COLUMNS,
    *(f"ocr_{snake}" for _, snake in _OCR_FIELDS),
    *(f"ocr_back_{snake}" for _, snake in _BACK_FIELDS),
    "ocr_extra",
)


def public_source(source: str) -> str:
    """The source as it may be shown: http(s) URLs lose their query and fragment."""
    if source.startswith(("http://", "https://")):
        try:
            parts = urlsplit(source)
        except ValueError:
            return ""
        return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return source


def iter_results(
    store: BatchStore,
    results: ResultStore,
    batch_id: str,
    *,
    only: Iterable[ItemStatus] | None = None,
    objects: ObjectStore | None = None,
) -> Iterator[dict[str, Any]]:
    """One dict per row (manifest order); ``only`` keeps rows with those statuses.

    ``objects`` reads the OCR documents of done rows (without it, rows carry no OCR fields).
    """
    with ThreadPoolExecutor(_FETCHERS, thread_name_prefix="export") as pool:
        yield from _iter_rows(store, results, batch_id, only, objects, pool)


def _iter_rows(
    store: BatchStore,
    results: ResultStore,
    batch_id: str,
    only: Iterable[ItemStatus] | None,
    objects: ObjectStore | None,
    pool: ThreadPoolExecutor,
) -> Iterator[dict[str, Any]]:
    wanted = set(only) if only is not None else None
    meta = store.meta(batch_id)
    size = int(meta["chunk_size"])
    submitted = meta.get("submitted") == "1"
    chunks = int(meta.get("total_chunks" if submitted else "submitted_chunks", "0") or 0)
    for chunk_no in range(chunks):
        rows = store.read_chunk(batch_id, chunk_no, size)
        if not rows:
            continue
        statuses = store.statuses(batch_id, rows[0].seq, len(rows))
        picked = [
            (row, status)
            for row, status in zip(rows, statuses, strict=True)
            if wanted is None or status in wanted
        ]
        if not picked:
            continue
        details = store.details(
            batch_id,
            [r.seq for r, s in picked if s not in (ItemStatus.DONE, ItemStatus.PENDING)],
        )
        done_ids = [
            r.spec.item_id for r, s in picked if s is ItemStatus.DONE and r.spec is not None
        ]
        records = _records(results, batch_id, done_ids)
        documents = _documents(objects, records, pool)
        for row, status in picked:
            out: dict[str, Any] = {"row": row.row, "line": row.line, "status": status.value}
            spec = row.spec
            if spec is not None:
                out.update(
                    item_id=spec.item_id,
                    source=public_source(spec.source),
                    doc_type=spec.doc_type,
                    card_side=spec.card_side,
                )
            detail = details.get(row.seq)
            if detail is not None:
                for key in ("code", "reason", "request_id"):
                    if detail.get(key) is not None:
                        out[key] = detail[key]
            if status is ItemStatus.DONE and spec is not None:
                record = records.get(spec.item_id)
                if record is None:
                    out["reason"] = "result record expired"
                else:
                    for key in ("passed", "sub_code", "transaction_id", "request_id"):
                        out[key] = record.get(key)
                    # Records written before the catalogue: derive its fields from the code.
                    for key, value in sub_code_fields(record.get("sub_code")).items():
                        out[key] = record.get(key, value)
                    if "result" not in record:  # written before results moved to S3
                        out["ext_id_info"] = record.get("ext_id_info")
                    elif spec.item_id in documents:
                        out["ext_id_info"] = documents[spec.item_id].get("extIdInfo")
                    else:
                        out["reason"] = "result document erased or unavailable"
            yield {k: v for k, v in out.items() if v is not None}


def _records(results: ResultStore, batch_id: str, item_ids: list[str]) -> dict[str, Any]:
    if not item_ids:
        return {}
    keys = [results.record_key(KIND_ITEM, item_ref(batch_id, i)) for i in item_ids]
    raw = cast("list[bytes | None]", results.redis.mget(keys))
    return {i: json.loads(v) for i, v in zip(item_ids, raw, strict=True) if v is not None}


def _documents(
    objects: ObjectStore | None, records: dict[str, Any], pool: ThreadPoolExecutor
) -> dict[str, dict[str, Any]]:
    """The S3 documents the records point at (item id -> document), fetched in parallel."""
    if objects is None:
        return {}
    wanted = [
        (item, ptr["key"])
        for item, record in records.items()
        if isinstance(ptr := record.get("result"), dict) and ptr.get("key")
    ]

    def fetch(key: str) -> dict[str, Any] | None:
        try:
            doc = json.loads(objects.get_bytes(key, max_size=MAX_DOCUMENT_BYTES))
        except ObjectNotFound:
            return None
        return doc if isinstance(doc, dict) else None

    fetched = pool.map(fetch, [key for _, key in wanted])
    return {item: doc for (item, _), doc in zip(wanted, fetched, strict=True) if doc is not None}


def flatten(row: dict[str, Any]) -> dict[str, str]:
    """A result row as CSV cells (see ``CSV_COLUMNS``)."""
    out = {k: _cell(v) for k, v in row.items() if k in BASE_COLUMNS}
    ext = row.get("ext_id_info") or {}
    spoof = ext.get("spoofInfo") or {}
    if spoof:
        out["spoof_result"] = _cell(spoof.get("spoofResult"))
        out["spoof_type"] = ";".join(str(t) for t in spoof.get("spoofType") or [])
    out["id_face_quality_score"] = _cell(ext.get("idFaceQualityScore"))
    out["ocr_id_passed"] = _cell(ext.get("ocrIdPassed"))
    extra: dict[str, Any] = {}
    for section, fields, prefix in (
        ("ocrIdInfo", _OCR_FIELDS, "ocr_"),
        ("ocrIdBackInfo", _BACK_FIELDS, "ocr_back_"),
    ):
        values = dict(ext.get(section) or {})
        for wire, snake in fields:
            if wire in values:
                out[prefix + snake] = _cell(values.pop(wire))
        if values:
            extra[section] = values
    known = {"spoofInfo", "idFaceQualityScore", "ocrIdPassed", "ocrIdInfo", "ocrIdBackInfo"}
    extra.update({k: v for k, v in ext.items() if k not in known})
    if extra:
        out["ocr_extra"] = json.dumps(extra, ensure_ascii=False, sort_keys=True)
    return out


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def write_jsonl(rows: Iterable[dict[str, Any]], out: TextIO) -> int:
    """Write rows as JSON lines; returns how many."""
    count = 0
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
        count += 1
    return count


def write_csv(rows: Iterable[dict[str, Any]], out: TextIO) -> int:
    """Write rows as CSV with ``CSV_COLUMNS``; returns how many."""
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writerow(flatten(row))
        count += 1
    return count


def jsonl_blocks(rows: Iterable[dict[str, Any]], block: int = 256 * 1024) -> Iterator[bytes]:
    """Rows as JSONL in blocks of about ``block`` bytes (for a streamed S3 upload)."""
    buf: list[bytes] = []
    size = 0
    for row in rows:
        line = (json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        buf.append(line)
        size += len(line)
        if size >= block:
            yield b"".join(buf)
            buf, size = [], 0
    if buf:
        yield b"".join(buf)
