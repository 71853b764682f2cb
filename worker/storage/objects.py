"""What the storage adapter hands out: stored objects, open uploads and the ``ObjectStore``
protocol services depend on (``S3ObjectStore`` implements it)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from worker.storage.multipart import MIB

DEFAULT_PART_SIZE = 8 * MIB
DEFAULT_MAX_GET_SIZE = 16 * MIB
SHA256_METADATA = "sha256"


@dataclass(frozen=True, slots=True)
class OpenUpload:
    """A multipart upload the store lists as not completed nor aborted."""

    key: str
    upload_id: str
    initiated: datetime


@dataclass(frozen=True, slots=True)
class StoredObject:
    """What the store holds under ``key``.

    ``sha256`` is the whole object's SHA-256: from its metadata, or (objects streamed in more
    parts than fit in memory, whose hash is known only at the end) computed on the way up or
    read back by ``head_verified``; ``None`` from ``head`` when the metadata lacks it.
    ``checksum_sha256`` is the store's own checksum when it keeps one (S3: the composite
    ``base64-N`` of the parts' SHA-256 for multipart objects).
    """

    key: str
    size: int
    sha256: str | None
    etag: str
    content_type: str | None = None
    encryption: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    checksum_sha256: str | None = None


class ObjectStore(Protocol):
    """What services need from object storage (``S3ObjectStore`` is the implementation)."""

    def put_stream(
        self,
        key: str,
        chunks: Iterable[bytes],
        *,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
        part_size: int = DEFAULT_PART_SIZE,
        expected_size: int | None = None,
        expected_sha256: str | None = None,
        concurrency: int | None = None,
    ) -> StoredObject: ...

    def put_bytes(
        self, key: str, data: bytes, *, content_type: str, metadata: Mapping[str, str] | None = None
    ) -> StoredObject: ...

    def head(self, key: str) -> StoredObject | None: ...

    def head_verified(self, key: str) -> StoredObject | None: ...

    def check_writable(self, key: str) -> None: ...

    def get_bytes(self, key: str, *, max_size: int = DEFAULT_MAX_GET_SIZE) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

    def abort_stale_uploads(
        self, prefix: str, older_than_s: float, *, now: datetime | None = None
    ) -> int: ...

    def abort_upload(self, key: str, upload_id: str) -> bool: ...

    def list_uploads(self, key: str) -> list[OpenUpload]: ...

    def ensure_bucket(self) -> bool: ...
