"""The S3 adapter: streamed, hashed, encrypted and verified writes to any S3-compatible store."""

from __future__ import annotations

from worker.storage.errors import (
    IntegrityError,
    ObjectNotFound,
    StorageError,
    s3_call,
    s3_error,
)
from worker.storage.lifecycle import RETAINED_PREFIXES, lifecycle_configuration
from worker.storage.multipart import (
    MAX_PART_SIZE,
    MAX_PARTS,
    MIB,
    MIN_PART_SIZE,
    MultipartUpload,
    content_md5,
)
from worker.storage.store import (
    DEFAULT_MAX_GET_SIZE,
    DEFAULT_PART_SIZE,
    MAX_COPY_SIZE,
    SHA256_METADATA,
    ObjectStore,
    S3ObjectStore,
    StoredObject,
    make_s3_client,
)

__all__ = [
    "DEFAULT_MAX_GET_SIZE",
    "DEFAULT_PART_SIZE",
    "MAX_COPY_SIZE",
    "MAX_PARTS",
    "MAX_PART_SIZE",
    "MIB",
    "MIN_PART_SIZE",
    "RETAINED_PREFIXES",
    "SHA256_METADATA",
    "IntegrityError",
    "MultipartUpload",
    "ObjectNotFound",
    "ObjectStore",
    "S3ObjectStore",
    "StorageError",
    "StoredObject",
    "content_md5",
    "lifecycle_configuration",
    "make_s3_client",
    "s3_call",
    "s3_error",
]
