"""Bulk re-verification: manifests of document images through DocOcrV2, each item billed once."""

from __future__ import annotations

from worker.batch.api import (
    PROBLEM_STATUSES,
    BatchAPI,
)
from worker.batch.calls import (
    Claim,
    ClaimingTransport,
    ClaimRefused,
    batch_client,
    claiming,
)
from worker.batch.chunking import ChunkOutcome, RetryChunk
from worker.batch.confine import (
    SourcePolicy,
    SourceRefused,
    UrlPrefix,
    is_public,
    resolve_host,
)
from worker.batch.control import (
    BatchControl,
    BatchStateError,
    RetryResult,
)
from worker.batch.counters import (
    RATE_WINDOW_S,
    call_rate,
    decode_progress,
)
from worker.batch.export import (
    BASE_COLUMNS,
    CSV_COLUMNS,
    flatten,
    iter_results,
    jsonl_blocks,
    public_source,
    write_csv,
    write_jsonl,
)
from worker.batch.ids import (
    BATCH_PREFIX,
    ITEM_PREFIX,
    ManifestHasher,
    batch_id_of_file,
    batch_id_of_stream,
    check_item_id,
    content_item_id,
    default_merchant_user_id,
    merchant_biz_id,
)
from worker.batch.layout import BatchKeys
from worker.batch.manifest import (
    Format,
    ManifestError,
    check_encoding,
    detect_format,
    iter_csv,
    iter_jsonl,
    iter_manifest,
)
from worker.batch.model import (
    TERMINAL,
    BatchState,
    ItemStatus,
    Progress,
    StoredRow,
    decode_chunk,
    encode_chunk,
)
from worker.batch.outcomes import (
    Outcomes,
    WorkItem,
)
from worker.batch.progress import (
    FINAL_STATES,
    bar,
    follow,
    format_duration,
    render_block,
    render_line,
    render_table,
)
from worker.batch.reads import BatchReads
from worker.batch.rows import (
    MAX_SOURCE_LENGTH,
    SOURCE_ALIASES,
    ImageSource,
    ItemSpec,
    ManifestRow,
    ParsedRow,
    RowError,
    SourceKind,
    parse_source,
    validate_row,
)
from worker.batch.service import BatchService
from worker.batch.sources import (
    ImageReader,
    ImageRejected,
    SourceUnavailable,
    check_image,
)
from worker.batch.store import (
    KEEP_CLAIM,
    BatchNotFound,
    BatchStore,
    Begin,
)
from worker.batch.submit import (
    INVALID_SAMPLE,
    SubmitError,
    SubmitResult,
    Submitter,
    hash_manifest,
)

__all__ = [
    "BASE_COLUMNS",
    "BATCH_PREFIX",
    "CSV_COLUMNS",
    "FINAL_STATES",
    "INVALID_SAMPLE",
    "ITEM_PREFIX",
    "KEEP_CLAIM",
    "MAX_SOURCE_LENGTH",
    "PROBLEM_STATUSES",
    "RATE_WINDOW_S",
    "SOURCE_ALIASES",
    "TERMINAL",
    "BatchAPI",
    "BatchControl",
    "BatchKeys",
    "BatchNotFound",
    "BatchReads",
    "BatchService",
    "BatchState",
    "BatchStateError",
    "BatchStore",
    "Begin",
    "ChunkOutcome",
    "Claim",
    "ClaimRefused",
    "ClaimingTransport",
    "Format",
    "ImageReader",
    "ImageRejected",
    "ImageSource",
    "ItemSpec",
    "ItemStatus",
    "ManifestError",
    "ManifestHasher",
    "ManifestRow",
    "Outcomes",
    "ParsedRow",
    "Progress",
    "RetryChunk",
    "RetryResult",
    "RowError",
    "SourceKind",
    "SourcePolicy",
    "SourceRefused",
    "SourceUnavailable",
    "StoredRow",
    "SubmitError",
    "SubmitResult",
    "Submitter",
    "UrlPrefix",
    "WorkItem",
    "bar",
    "batch_client",
    "batch_id_of_file",
    "batch_id_of_stream",
    "call_rate",
    "check_encoding",
    "check_image",
    "check_item_id",
    "claiming",
    "content_item_id",
    "decode_chunk",
    "decode_progress",
    "default_merchant_user_id",
    "detect_format",
    "encode_chunk",
    "flatten",
    "follow",
    "format_duration",
    "hash_manifest",
    "is_public",
    "iter_csv",
    "iter_jsonl",
    "iter_manifest",
    "iter_results",
    "jsonl_blocks",
    "merchant_biz_id",
    "parse_source",
    "public_source",
    "render_block",
    "render_line",
    "render_table",
    "resolve_host",
    "validate_row",
    "write_csv",
    "write_jsonl",
]
