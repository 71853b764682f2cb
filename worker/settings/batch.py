"""Batch OCR: chunking of a manifest, leases of chunks, and where its sources may be read."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from worker.settings.base import Part, parse_list
from worker.settings.storage import key_folder

_KEY_PREFIX_RE = re.compile(r"(?:[A-Za-z0-9_\-][A-Za-z0-9._\-]*/)+")


class BatchSettings(Part):
    """How a manifest is cut into chunks and how a chunk is worked through."""

    # DocOcrV2 takes one product plan (seed 002); anything else would be refused at each call.
    batch_product_code: Literal["ID_OCR_MIN"] = Field(
        "ID_OCR_MIN", description="product code of batch calls (DocOcrV2 takes only ID_OCR_MIN)"
    )
    batch_default_doc_type: str | None = Field(
        None, description="DocType for manifest rows that give none"
    )
    batch_chunk_size: int = Field(
        200, ge=1, le=5000, description="manifest rows per stored chunk and Celery message"
    )
    batch_lease_s: float = Field(
        4.5,
        ge=1,
        description="chunk lease, renewed by the worker's heartbeat; a dead worker's chunk is "
        "taken over once it runs out (at least three IDV_HEARTBEAT_EVERY_S)",
    )
    batch_chunk_budget_s: float = Field(
        240, gt=0, description="a chunk task hands the rest of its chunk on after this long"
    )
    batch_item_attempts: int = Field(
        4, ge=1, description="tries per item within a task on throttling or transient errors"
    )
    batch_watchdog_interval_s: float = Field(
        30, gt=0, description="how often a running batch is checked for chunks a dead worker left"
    )
    batch_ttl_s: int = Field(
        35 * 86400, ge=3600, description="how long a batch's state stays in Redis after activity"
    )


class SourceSettings(Part):
    """What a manifest row may point at: a folder, URL prefixes, buckets; how long a read takes."""

    batch_source_root: str | None = Field(
        None,
        description="folder local manifest sources must resolve under (symlinks out of it and "
        "'..' are refused); unset = the manifest's own folder",
    )
    batch_allowed_url_prefixes: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="http(s) prefixes manifest sources may start with, comma-separated "
        "(scheme, host, port and path compared); empty = http(s) sources refused",
    )
    batch_allow_private_urls: bool = Field(
        False,
        description="let http(s) sources resolve to loopback, link-local or private addresses "
        "(development only)",
    )
    batch_allowed_buckets: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="buckets s3:// manifest sources may name, comma-separated; empty = only "
        "IDV_S3_BUCKET (which is read only under IDV_BATCH_IMPORT_PREFIX)",
    )
    batch_import_prefix: str = Field(
        "imports/",
        min_length=1,
        description="the only folder of IDV_S3_BUCKET manifest sources may read (a key prefix "
        "from the bucket's root); never the keys the worker writes (evidence/, results/, "
        "batches/, _idv/ under IDV_S3_PREFIX)",
    )
    batch_source_timeout_s: float = Field(
        15.0, gt=0, le=300, description="longest time reading one manifest source may take"
    )

    @field_validator("batch_allowed_url_prefixes", "batch_allowed_buckets", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return parse_list(value)

    @field_validator("batch_allowed_url_prefixes", mode="after")
    @classmethod
    def _url_prefixes(cls, value: list[str]) -> list[str]:
        for prefix in value:
            try:
                parts = urlsplit(prefix)
                parts.port  # noqa: B018  (raises on a bad port)
            except ValueError:
                raise ValueError(f"not a URL: {prefix[:80]!r}") from None
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"prefix must be an http(s) URL with a host: {prefix[:80]!r}")
            if parts.query or parts.fragment or parts.username or parts.password:
                raise ValueError("a prefix has no query, fragment or credentials")
            if "\\" in parts.path or any(s in (".", "..") for s in parts.path.split("/")):
                raise ValueError(f"a prefix has no dot segment or backslash: {prefix[:80]!r}")
            if re.search(r"%(?:2f|5c|25)", parts.path, re.IGNORECASE):
                raise ValueError(f"a prefix has no encoded '/', '\\' or '%': {prefix[:80]!r}")
        return value

    @field_validator("batch_allowed_buckets", mode="after")
    @classmethod
    def _buckets(cls, value: list[str]) -> list[str]:
        for bucket in value:
            if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", bucket):
                raise ValueError(f"not a bucket name: {bucket[:80]!r}")
        return value

    @field_validator("batch_import_prefix", mode="after")
    @classmethod
    def _import_prefix(cls, value: str) -> str:
        folder = key_folder(value)
        segments = folder.split("/")[:-1]
        if not _KEY_PREFIX_RE.fullmatch(folder) or any(s in (".", "..") for s in segments):
            raise ValueError(
                "must be a folder of plain segments (letters, digits, '._-'), e.g. 'imports/'"
            )
        return folder
