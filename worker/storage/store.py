"""S3 adapter: streamed, hashed, encrypted and verified writes to any S3-compatible store.

The store itself is here; its pieces live beside it: ``objects`` (what it hands out and the
``ObjectStore`` protocol), ``client`` (the boto3 client), ``streaming`` (one ``put_stream``),
``multipart`` (parts in flight), ``admin`` (bucket-level operations).

Exceptions (``worker.storage.errors``, re-exported here; each carries ``key``, ``operation``,
``code`` and ``retryable``; never a URL)::

    StorageError            an S3 operation failed
    ├── ObjectNotFound      the object does not exist (``get_bytes``)
    ├── IntegrityError      what the store holds is not what was sent (size, sha256)
    ├── NotSupported        the store lacks the operation (501/405): never retried
    └── StoreMisconfigured  a configuration error (SSE not applied, refused): not retried

An exception raised by the caller's chunk iterator (the source download broke) propagates
unchanged, after the upload has been aborted.

Encryption is checked per object as ``IDV_S3_VERIFY_SSE`` says (``worker.storage.encryption``).
Once an object fails that check the store refuses every further write in this process at once
(same error, before reading any byte of the source): a misconfigured store costs one
download, not one per retry.

Object keys are taken as given (build them with ``worker.keys.ObjectKeys``) and checked with
``validate_object_key``; ``settings.s3_prefix`` is applied by ``ObjectKeys``, not here.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from worker.keys import normalize_prefix, validate_object_key
from worker.settings import StorageSettings
from worker.storage.client import make_s3_client, user_metadata
from worker.storage.encryption import EncryptionPolicy, refused_fix
from worker.storage.errors import (
    IntegrityError,
    NotSupported,
    ObjectNotFound,
    StorageError,
    StoreMisconfigured,
    s3_call,
)
from worker.storage.multipart import (
    MAX_PART_SIZE,
    MAX_PARTS,
    MIB,
    MIN_PART_SIZE,
    MultipartUpload,
    UploadTracker,
    content_md5,
)
from worker.storage.objects import (
    DEFAULT_MAX_GET_SIZE,
    DEFAULT_PART_SIZE,
    SHA256_METADATA,
    ObjectStore,
    OpenUpload,
    StoredObject,
)
from worker.storage.purge import Purger
from worker.storage.streaming import StreamPut

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = [
    "DEFAULT_MAX_GET_SIZE",
    "DEFAULT_PART_SIZE",
    "MAX_PARTS",
    "MAX_PART_SIZE",
    "MIB",
    "MIN_PART_SIZE",
    "SHA256_METADATA",
    "IntegrityError",
    "ObjectNotFound",
    "ObjectStore",
    "OpenUpload",
    "S3ObjectStore",
    "StorageError",
    "StoredObject",
    "make_s3_client",
]

logger = logging.getLogger(__name__)

SSE_MODES = ("AES256", "aws:kms", "none")
# Codes of stores that refuse per-part checksums (``ChecksumAlgorithm``) on a new upload:
# such a store gets uploads without them from then on.
_NO_CHECKSUMS = frozenset({"InvalidArgument", "InvalidRequest", "NotImplemented"})
_READ_BACK_CHUNK = MIB


class S3ObjectStore(Purger):
    """``ObjectStore`` on the S3 API (AWS S3, MinIO, moto), one bucket, encryption on writes."""

    def __init__(
        self,
        settings: StorageSettings,
        *,
        client: S3Client | None = None,
        tracker: UploadTracker | None = None,
        part_attempts: int = 3,
        checksums: bool = True,
    ) -> None:
        """A store on ``settings.s3_bucket``; builds its client unless one is passed.

        ``checksums``: send each part of a streamed upload with its SHA-256 (turned off by
        itself, for this store object, the first time the store refuses them).
        ``tracker`` is told of every multipart upload started and ended (the stale-upload
        sweep's index); ``part_attempts`` how often one part is sent (from the buffer it still
        holds, the upload kept open) before a retryable failure ends the upload.
        """
        if settings.s3_sse not in SSE_MODES:
            raise ValueError(
                f"s3_sse must be one of {', '.join(SSE_MODES)}, got {settings.s3_sse!r}"
            )
        if part_attempts < 1:
            raise ValueError("part_attempts must be >= 1")
        self.client = client if client is not None else make_s3_client(settings)
        self.bucket = settings.s3_bucket
        self.key_prefix = normalize_prefix(settings.s3_prefix)
        self.tracker = tracker
        self.part_attempts = part_attempts
        self._misconfigured: StoreMisconfigured | None = None
        self.upload_concurrency = settings.s3_upload_concurrency
        self.checksums = checksums
        self.sse = None if settings.s3_sse == "none" else settings.s3_sse
        self._sse: dict[str, Any] = {}
        if self.sse is not None:
            self._sse["ServerSideEncryption"] = self.sse
        if self.sse == "aws:kms" and settings.s3_kms_key_id:
            self._sse["SSEKMSKeyId"] = settings.s3_kms_key_id
        self.encryption = EncryptionPolicy(self.sse, settings.s3_verify_sse)

    def close(self) -> None:
        """Close the client's connection pool (on worker shutdown)."""
        self.client.close()

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
    ) -> StoredObject:
        """Stream ``chunks`` to ``key`` in bounded memory and return the verified object.

        Memory: at most ``concurrency + 1`` parts of ``part_size`` (default concurrency:
        ``s3_upload_concurrency``) plus the chunk being copied in, however fast the source:
        reading it waits while ``concurrency`` parts are in flight.
        A payload that fits in that memory gets its SHA-256 in the object's metadata; a larger
        one streams as a multipart upload whose parts carry their own SHA-256 (where the store
        supports checksums) and whose whole SHA-256, computed on the way, is returned in
        ``StoredObject.sha256`` without being written onto the object (that would take a copy
        of the whole object): keep it in the records that point at the object, or get it back
        with ``head_verified``. Pass ``expected_sha256`` when it is known to have it in the
        metadata anyway (``worker.storage.streaming``).
        ``expected_size``/``expected_sha256`` are checked before the upload completes.
        A multipart upload is aborted on any failure (the iterator raising, a part failing:
        the parts in flight are waited for first), so no partial object is ever visible. If
        anything fails once the object may have been written, the key is deleted, so a failed
        call leaves nothing there (re-stream from scratch to retry).
        """
        validate_object_key(key)
        self._refuse_if_misconfigured(key, chunks)
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise ValueError(f"part_size must be between {MIN_PART_SIZE} and {MAX_PART_SIZE}")
        concurrency = self.upload_concurrency if concurrency is None else concurrency
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        meta = user_metadata(metadata)
        if expected_sha256 is not None:
            expected_sha256 = expected_sha256.lower()
            meta[SHA256_METADATA] = expected_sha256
        put = StreamPut(
            self, key, content_type=content_type, meta=meta, part_size=part_size,
            concurrency=concurrency, expected_size=expected_size, expected_sha256=expected_sha256,
        )  # fmt: skip
        return put.run(chunks)

    def put_bytes(
        self, key: str, data: bytes, *, content_type: str, metadata: Mapping[str, str] | None = None
    ) -> StoredObject:
        """Write a small object in one PutObject, with its sha256, and verify it.

        On failure the key is deleted, as for ``put_stream``.
        """
        validate_object_key(key)
        self._refuse_if_misconfigured(key)
        digest = hashlib.sha256(data).hexdigest()
        meta = {**user_metadata(metadata), SHA256_METADATA: digest}
        try:
            self.put_single(key, data, content_type, meta)
            return self.verify(key, len(data), digest)
        except BaseException:
            self.delete_quietly(key)
            raise

    def check_writable(self, key: str) -> None:
        """Raise the ``StoreMisconfigured`` a write to ``key`` would raise at once (call it
        before opening a download that would be wasted)."""
        validate_object_key(key)
        self._refuse_if_misconfigured(key)

    def head(self, key: str) -> StoredObject | None:
        """What is stored under ``key``, or ``None`` if nothing is."""
        validate_object_key(key)
        try:
            with s3_call("HeadObject", key):
                resp = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except ObjectNotFound:
            return None
        meta = {k.lower(): v for k, v in resp.get("Metadata", {}).items()}
        return StoredObject(
            key=key,
            size=int(resp.get("ContentLength", 0)),
            sha256=meta.get(SHA256_METADATA),
            etag=resp.get("ETag", "").strip('"'),
            content_type=resp.get("ContentType"),
            encryption=resp.get("ServerSideEncryption"),
            metadata=meta,
            checksum_sha256=resp.get("ChecksumSHA256"),
        )

    def head_verified(self, key: str) -> StoredObject | None:
        """``head`` with the whole object's SHA-256 filled in: from its metadata, else read
        back and hashed (objects that were streamed; bounded memory, one read of the object).

        A stored object is always complete (uploads complete atomically, and a failed write
        deletes the key), so this is how an earlier, interrupted run's object is reused.
        """
        stored = self.head(key)
        if stored is None or stored.sha256 is not None:
            return stored
        hasher = hashlib.sha256()
        size = 0
        with s3_call("GetObject", key):
            body = self.client.get_object(Bucket=self.bucket, Key=key, IfMatch=stored.etag)["Body"]
            try:
                for chunk in body.iter_chunks(_READ_BACK_CHUNK):
                    hasher.update(chunk)
                    size += len(chunk)
            finally:
                body.close()
        if size != stored.size:
            raise IntegrityError(key, "size", stored.size, size)
        return replace(stored, sha256=hasher.hexdigest())

    def get_bytes(self, key: str, *, max_size: int = DEFAULT_MAX_GET_SIZE) -> bytes:
        """The whole body of a small object; ``ObjectNotFound`` if missing."""
        validate_object_key(key)
        with s3_call("GetObject", key):
            resp = self.client.get_object(Bucket=self.bucket, Key=key)
            body = resp["Body"]
            try:
                if resp.get("ContentLength", 0) > max_size:
                    raise StorageError(key, "GetObject", "TooLarge")
                return body.read()
            finally:
                body.close()

    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""
        return self.head(key) is not None

    def delete(self, key: str) -> None:
        """Delete ``key`` (no error if it does not exist)."""
        validate_object_key(key)
        with s3_call("DeleteObject", key):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def write_probe(self, key: str, *, encrypted: bool) -> str | None:
        """Write a tiny probe object (with the configured SSE if ``encrypted``) and return the
        encryption the store reports for it (``worker.storage.encryption.probe_encryption``)."""
        validate_object_key(key)
        extra = self._sse if encrypted else {}
        with s3_call("PutObject", key):
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=b"idv probe", ContentType="text/plain", **extra
            )
        stored = self.head(key)
        return stored.encryption if stored is not None else None

    # --- internals ---

    def start_multipart(
        self, key: str, content_type: str, meta: dict[str, str], part_size: int, concurrency: int
    ) -> MultipartUpload:
        """A multipart upload with the configured encryption and, where the store supports
        them, per-part SHA-256 checksums (``worker.storage.streaming.Sink``)."""
        while True:
            try:
                with self._sse_refusal(key):
                    return MultipartUpload.start(
                        self.client, self.bucket, key, part_size=part_size,
                        concurrency=concurrency, tracker=self.tracker,
                        create_args={"ContentType": content_type, "Metadata": meta, **self._sse},
                        part_attempts=self.part_attempts, checksum=self.checksums,
                    )  # fmt: skip
            except StorageError as exc:
                if not self.checksums or exc.retryable or exc.code not in _NO_CHECKSUMS:
                    raise
                logger.warning(
                    "the S3 store refuses per-part checksums (%s): uploads go without them",
                    exc.code,
                )
                self.checksums = False

    @contextmanager
    def _sse_refusal(self, key: str) -> Iterator[None]:
        """A write with SSE that the store says it does not implement: SSE is refused (MinIO
        without a KMS answers 501), a configuration error, latched like a failed check."""
        try:
            yield
        except NotSupported as exc:
            if self.sse is None:
                raise
            self._misconfigured = StoreMisconfigured(
                key, exc.operation, f"SseRefused.{exc.code}", refused_fix(self.sse)
            )
            raise self._misconfigured from exc

    def put_single(
        self, key: str, body: bytes | bytearray, content_type: str, meta: dict[str, str]
    ) -> None:
        """One PutObject with the configured encryption (``Sink``)."""
        with self._sse_refusal(key), s3_call("PutObject", key):
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,  # type: ignore[arg-type]  # bytearray is a valid blob
                ContentType=content_type,
                ContentMD5=content_md5(body),
                Metadata=meta,
                **self._sse,
            )

    def verify(
        self, key: str, size: int, digest: str, *, streamed: bool = False,
        composite: str | None = None,
    ) -> StoredObject:  # fmt: skip
        """Check what the store holds under ``key`` against what was sent (``Sink``).

        The SHA-256 must be in the metadata unless the object was ``streamed``; then the
        store's composite checksum must match ``composite`` where both exist.
        """
        stored = self.head(key)
        if stored is None:
            raise IntegrityError(key, "presence", "stored", "missing")
        if stored.size != size:
            raise IntegrityError(key, "size", size, stored.size)
        if not streamed and stored.sha256 != digest:
            raise IntegrityError(key, "sha256", digest, stored.sha256)
        if streamed:
            checksum = stored.checksum_sha256
            # S3 writes the composite as "base64-N", some stores without the part count.
            if checksum and composite and checksum.split("-")[0] != composite.split("-")[0]:
                raise IntegrityError(key, "checksum_sha256", composite, checksum)
            stored = replace(stored, sha256=digest)
        try:
            self.encryption.check(key, stored.encryption)
        except StoreMisconfigured as exc:
            self._misconfigured = exc
            raise
        return stored

    def _refuse_if_misconfigured(self, key: str, source: Iterable[bytes] | None = None) -> None:
        latched = self._misconfigured
        if latched is None:
            return
        close = getattr(source, "close", None)
        if callable(close):  # release the caller's download before anything was read
            close()
        raise StoreMisconfigured(key, "PutObject", latched.code, latched.fix)

    def delete_quietly(self, key: str) -> None:
        """Delete ``key``, logging (not raising) a failure."""
        try:
            self.delete(key)
        except StorageError as exc:
            logger.warning("could not delete unverified object %s: %s", key, exc.code)
