"""The S3 adapter: streamed, hashed, encrypted and verified writes to any S3-compatible store."""

from __future__ import annotations

from worker.storage.encryption import (
    EncryptionPolicy,
    SseOutcome,
    SseProbe,
    probe_encryption,
)
from worker.storage.errors import (
    EncryptionNotApplied,
    IntegrityError,
    NotSupported,
    ObjectNotFound,
    StorageError,
    StoreMisconfigured,
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
    UploadTracker,
    content_md5,
)
from worker.storage.purge import BucketCopies, PurgeOutcome, Remaining, ReplicationRule
from worker.storage.store import (
    DEFAULT_MAX_GET_SIZE,
    DEFAULT_PART_SIZE,
    SHA256_METADATA,
    ObjectStore,
    OpenUpload,
    S3ObjectStore,
    StoredObject,
    make_s3_client,
)

__all__ = [
    "DEFAULT_MAX_GET_SIZE",
    "DEFAULT_PART_SIZE",
    "MAX_PARTS",
    "MAX_PART_SIZE",
    "MIB",
    "MIN_PART_SIZE",
    "RETAINED_PREFIXES",
    "SHA256_METADATA",
    "BucketCopies",
    "EncryptionNotApplied",
    "EncryptionPolicy",
    "IntegrityError",
    "MultipartUpload",
    "NotSupported",
    "ObjectNotFound",
    "ObjectStore",
    "OpenUpload",
    "PurgeOutcome",
    "Remaining",
    "ReplicationRule",
    "S3ObjectStore",
    "SseOutcome",
    "SseProbe",
    "StorageError",
    "StoreMisconfigured",
    "StoredObject",
    "UploadTracker",
    "content_md5",
    "lifecycle_configuration",
    "make_s3_client",
    "probe_encryption",
    "s3_call",
    "s3_error",
]
