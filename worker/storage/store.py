"""S3 adapter: streamed, hashed, encrypted and verified writes to any S3-compatible store.

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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import boto3
from botocore.config import Config

from worker.keys import normalize_prefix, validate_object_key
from worker.settings import Settings
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

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = [
    "DEFAULT_MAX_GET_SIZE",
    "DEFAULT_PART_SIZE",
    "MAX_COPY_SIZE",
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

DEFAULT_PART_SIZE = 8 * MIB
# CopyObject (used to attach the sha256 to a multipart object) is limited to 5 GiB; larger
# objects are rewritten by a multipart copy (UploadPartCopy) in parts of COPY_PART_SIZE.
MAX_COPY_SIZE = 5 * 1024 * MIB
COPY_PART_SIZE = 512 * MIB
DEFAULT_MAX_GET_SIZE = 16 * MIB
SHA256_METADATA = "sha256"
SSE_MODES = ("AES256", "aws:kms", "none")


@dataclass(frozen=True, slots=True)
class OpenUpload:
    """A multipart upload the store lists as not completed nor aborted."""

    key: str
    upload_id: str
    initiated: datetime


@dataclass(frozen=True, slots=True)
class StoredObject:
    """What the store holds under ``key``; ``sha256`` is ``None`` if it was not written by us."""

    key: str
    size: int
    sha256: str | None
    etag: str
    content_type: str | None = None
    encryption: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


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


def make_s3_client(
    settings: Settings,
    *,
    max_pool_connections: int | None = None,
    connect_timeout: float = 5.0,
    read_timeout: float = 60.0,
    max_attempts: int = 5,
    session: boto3.session.Session | None = None,
) -> S3Client:
    """One S3 client for this process, from ``settings`` (thread-safe; share it).

    ``session`` lets callers that build many clients (tests) reuse loaded service models.
    The connection pool defaults to room for a few uploads' parts in flight at once.
    """
    if max_pool_connections is None:
        max_pool_connections = max(16, 2 * settings.s3_upload_concurrency)
    config = Config(
        region_name=settings.s3_region,
        signature_version="s3v4",
        retries={"mode": "standard", "total_max_attempts": max_attempts},  # first try included
        max_pool_connections=max_pool_connections,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        tcp_keepalive=True,
        # S3-compatible stores (MinIO, moto) reject or mis-handle the default CRC checksums.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        # Custom endpoints rarely have wildcard DNS for virtual-hosted buckets.
        s3={"addressing_style": "path" if settings.s3_endpoint_url else "auto"},
    )
    secret = settings.s3_secret_access_key
    # A private session: never the module-level default session boto3 would otherwise create.
    session = session or boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=secret.get_secret_value() if secret is not None else None,
        config=config,
    )


def _user_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in (metadata or {}).items():
        low = name.lower()
        if low == SHA256_METADATA:
            raise ValueError("metadata key 'sha256' is reserved: it is computed while uploading")
        if not low or not all(c.isascii() and (c.isalnum() or c in "-_") for c in low):
            raise ValueError(f"metadata key {name!r} must be ASCII letters, digits, '-' or '_'")
        if not value.isascii() or not value.isprintable():
            raise ValueError(f"metadata value for {name!r} must be printable ASCII")
        out[low] = value
    return out


class S3ObjectStore:
    """``ObjectStore`` on the S3 API (AWS S3, MinIO, moto), one bucket, encryption on writes."""

    def __init__(
        self,
        settings: Settings,
        *,
        client: S3Client | None = None,
        max_copy_size: int = MAX_COPY_SIZE,
        tracker: UploadTracker | None = None,
        part_attempts: int = 3,
    ) -> None:
        """A store on ``settings.s3_bucket``; builds its client unless one is passed.

        ``max_copy_size``: largest object rewritten by one CopyObject (S3's limit unless a
        store has a lower one); larger ones are rewritten by a multipart copy.
        ``tracker`` is told of every multipart upload started and ended (the stale-upload
        sweep's index); ``part_attempts`` how often one part is sent (from the buffer it still
        holds, the upload kept open) before a retryable failure ends the upload.
        """
        if settings.s3_sse not in SSE_MODES:
            raise ValueError(
                f"s3_sse must be one of {', '.join(SSE_MODES)}, got {settings.s3_sse!r}"
            )
        if not MIN_PART_SIZE <= max_copy_size <= MAX_COPY_SIZE:
            raise ValueError(f"max_copy_size must be between {MIN_PART_SIZE} and {MAX_COPY_SIZE}")
        if part_attempts < 1:
            raise ValueError("part_attempts must be >= 1")
        self.client = client if client is not None else make_s3_client(settings)
        self.bucket = settings.s3_bucket
        self.key_prefix = normalize_prefix(settings.s3_prefix)
        self.tracker = tracker
        self.part_attempts = part_attempts
        self._misconfigured: StoreMisconfigured | None = None
        self.upload_concurrency = settings.s3_upload_concurrency
        self.max_copy_size = max_copy_size
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
        A payload that fits in that memory is read whole first, so its SHA-256 is known
        before it goes up: one PutObject up to ``part_size``, else a multipart upload with
        the hash in its metadata. A larger one streams as a multipart upload whose parts go up
        ``concurrency`` at a time while the source is read, and its SHA-256 (computed in order
        on the way) is attached after completion by a server-side copy of the object onto
        itself (so it is briefly visible without it: an object lacking ``sha256`` is not a
        verified one); pass ``expected_sha256`` when it is known to skip that copy.
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
        meta = _user_metadata(metadata)
        if expected_sha256 is not None:
            expected_sha256 = expected_sha256.lower()
            meta[SHA256_METADATA] = expected_sha256
        hasher = hashlib.sha256()
        buf = bytearray(part_size)  # the part being filled
        fill = size = 0
        # Full parts held back while the whole payload may still fit in the memory allowed
        # (concurrency + 1 parts): then its SHA-256 is known before the upload starts and goes
        # in the metadata up front, with no copy afterwards.
        held: list[bytearray] = []
        upload: MultipartUpload | None = None
        visible = False
        source = iter(chunks)
        try:
            for chunk in source:
                view = memoryview(chunk).cast("B")
                hasher.update(view)
                size += len(view)
                if expected_size is not None and size > expected_size:
                    raise IntegrityError(key, "size", expected_size, f">={size}")
                if upload is not None:
                    upload.check()  # a failed part stops the download now, not at the end
                pos = 0
                while pos < len(view):
                    if fill == part_size:  # more bytes after a full part: hand it on
                        if upload is None and expected_sha256 is None and len(held) < concurrency:
                            held.append(buf)
                            buf = bytearray(part_size)
                        else:
                            if upload is None:
                                upload = self._start_multipart(
                                    key, content_type, meta, part_size, concurrency
                                )
                            for part in (*held, buf):
                                upload.send(part)  # waits while `concurrency` are in flight
                            held.clear()
                            buf = upload.buffer()
                        fill = 0
                    take = min(part_size - fill, len(view) - pos)
                    buf[fill : fill + take] = view[pos : pos + take]
                    fill += take
                    pos += take
            digest = hasher.hexdigest()
            if expected_size is not None and size != expected_size:
                raise IntegrityError(key, "size", expected_size, size)
            if expected_sha256 is not None and digest != expected_sha256:
                raise IntegrityError(key, "sha256", expected_sha256, digest)
            del buf[fill:]
            attach_sha256 = upload is not None and expected_sha256 is None
            meta[SHA256_METADATA] = digest
            if upload is None and size <= part_size:
                visible = True
                self._put_single(key, buf, content_type, meta)
                return self._verify(key, size, digest)
            if upload is None:  # the whole payload is in memory: its hash goes in up front
                upload = self._start_multipart(key, content_type, meta, part_size, concurrency)
            for part in (*held, buf):
                if part:
                    upload.send(part)
            del held, buf
            upload.finish()
            visible = True
            etag = upload.complete()
            if attach_sha256:
                self._copy_onto_itself(key, etag, size, content_type, meta, concurrency)
            return self._verify(key, size, digest)
        except BaseException:
            if upload is not None:
                upload.abort()
            if visible:
                self.delete_quietly(key)
            # Let a generator source release its download connection now, not at GC time.
            close = getattr(source, "close", None)
            if callable(close):
                close()
            raise

    def put_bytes(
        self, key: str, data: bytes, *, content_type: str, metadata: Mapping[str, str] | None = None
    ) -> StoredObject:
        """Write a small object in one PutObject, with its sha256, and verify it.

        On failure the key is deleted, as for ``put_stream``.
        """
        validate_object_key(key)
        self._refuse_if_misconfigured(key)
        digest = hashlib.sha256(data).hexdigest()
        meta = {**_user_metadata(metadata), SHA256_METADATA: digest}
        try:
            self._put_single(key, data, content_type, meta)
            return self._verify(key, len(data), digest)
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
                resp = self.client.head_object(Bucket=self.bucket, Key=key)
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
        )

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

    def list_keys(self, prefix: str) -> Iterator[str]:
        """Every key under ``prefix`` (paged; erasure and maintenance, not hot paths)."""
        validate_object_key(prefix)
        with s3_call("ListObjectsV2", prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    yield item["Key"]

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix`` (a folder: it must end with ``/``)."""
        if not prefix.endswith("/"):
            raise ValueError("delete_prefix takes a folder prefix ending with '/'")
        keys = list(self.list_keys(prefix))
        for first in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[first : first + 1000]]
            with s3_call("DeleteObjects", prefix):
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch})  # type: ignore[typeddict-item]
        return len(keys)

    def abort_stale_uploads(
        self, prefix: str, older_than_s: float, *, now: datetime | None = None
    ) -> int:
        """Abort multipart uploads under ``prefix`` started over ``older_than_s`` ago.

        Killed workers leave uploads behind; their parts cost storage until aborted.
        Returns how many were aborted.
        """
        if prefix:
            validate_object_key(prefix)
        cutoff = (now or datetime.now(UTC)) - timedelta(seconds=older_than_s)
        aborted = 0
        with s3_call("ListMultipartUploads", prefix):
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            stale = [
                (upload["Key"], upload["UploadId"])
                for page in pages
                for upload in page.get("Uploads", [])
                if upload["Initiated"] <= cutoff
            ]
        for key, upload_id in stale:
            try:
                with s3_call("AbortMultipartUpload", key):
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=key, UploadId=upload_id
                    )
                aborted += 1
            except StorageError as exc:
                if exc.code != "NoSuchUpload":  # finished or aborted meanwhile
                    raise
        return aborted

    def abort_upload(self, key: str, upload_id: str) -> bool:
        """Abort one multipart upload; False if the store no longer knows it (ended already).

        Raises ``NotSupported`` on stores without AbortMultipartUpload (s3rver 3.x).
        """
        validate_object_key(key)
        try:
            with s3_call("AbortMultipartUpload", key):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except StorageError as exc:
            if exc.code == "NoSuchUpload":
                return False
            raise
        return True

    def list_uploads(self, key: str) -> list[OpenUpload]:
        """Open multipart uploads of exactly ``key`` (the key is the prefix, as MinIO needs).

        Raises ``NotSupported`` on stores without ListMultipartUploads (s3rver 3.x).
        """
        validate_object_key(key)
        with s3_call("ListMultipartUploads", key):
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=key
            )
            return [
                OpenUpload(upload["Key"], upload["UploadId"], upload["Initiated"])
                for page in pages
                for upload in page.get("Uploads", [])
                if upload["Key"] == key
            ]

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

    def bucket_exists(self) -> bool:
        """Whether the bucket exists (HeadBucket; other errors raise ``StorageError``)."""
        try:
            with s3_call("HeadBucket", None):
                self.client.head_bucket(Bucket=self.bucket)
        except ObjectNotFound:
            return False
        return True

    def ensure_bucket(self) -> bool:
        """Create the bucket if it does not exist; True if this call created it."""
        if self.bucket_exists():
            return False
        region = self.client.meta.region_name
        try:
            with s3_call("CreateBucket", None):
                if region and region != "us-east-1":
                    self.client.create_bucket(
                        Bucket=self.bucket,
                        CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
                    )
                else:
                    self.client.create_bucket(Bucket=self.bucket)
        except StorageError as exc:
            if exc.code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise
            return False
        return True

    # --- internals ---

    def _start_multipart(
        self, key: str, content_type: str, meta: dict[str, str], part_size: int, concurrency: int
    ) -> MultipartUpload:
        with self._sse_refusal(key):
            return MultipartUpload.start(
                self.client, self.bucket, key, part_size=part_size, concurrency=concurrency,
                create_args={"ContentType": content_type, "Metadata": meta, **self._sse},
                tracker=self.tracker, part_attempts=self.part_attempts,
            )  # fmt: skip

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

    def _put_single(
        self, key: str, body: bytes | bytearray, content_type: str, meta: dict[str, str]
    ) -> None:
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

    def _copy_onto_itself(
        self, key: str, etag: str, size: int, content_type: str, meta: dict[str, str],
        concurrency: int,
    ) -> None:  # fmt: skip
        """Replace the metadata of the object just completed (only if it is still that one).

        Metadata is fixed when a multipart upload starts, before the hash is known, and S3 can
        only change it by rewriting the object. The rewrite happens inside the store (no byte
        passes through the worker) but its time grows with the size. moto (the tests and
        bench/evidence.py) reads, rewrites and re-hashes the whole body in its own process:
        a quarter to nearly half of a large archive's time there, a cost boto3's upload_file
        does not pay. Payloads of up to ``concurrency + 1`` parts never need it.
        """
        if size <= self.max_copy_size:
            with s3_call("CopyObject", key):
                self.client.copy_object(
                    Bucket=self.bucket,
                    Key=key,
                    CopySource={"Bucket": self.bucket, "Key": key},
                    CopySourceIfMatch=etag,
                    MetadataDirective="REPLACE",
                    ContentType=content_type,
                    Metadata=meta,
                    **self._sse,
                )
            return
        # Beyond CopyObject's limit: a multipart upload onto the same key whose parts are
        # ranges of the current object, copied by the store (UploadPartCopy), a few at a time.
        # (moto reads the whole source object for every UploadPartCopy, so this path is slow
        # there out of proportion; the tests only run it on small objects.)
        part = max(min(COPY_PART_SIZE, self.max_copy_size), -(-size // MAX_PARTS))
        copy = self._start_multipart(key, content_type, meta, part, concurrency)
        try:
            for first in range(0, size, part):
                copy.send_copy(etag, first, min(first + part, size) - 1)
            copy.finish()
            copy.complete()
        except BaseException:
            copy.abort()
            raise

    def _verify(self, key: str, size: int, digest: str) -> StoredObject:
        stored = self.head(key)
        if stored is None:
            raise IntegrityError(key, "presence", "stored", "missing")
        if stored.size != size:
            raise IntegrityError(key, "size", size, stored.size)
        if stored.sha256 != digest:
            raise IntegrityError(key, "sha256", digest, stored.sha256)
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
