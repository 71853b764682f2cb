"""S3 adapter: streamed, hashed, encrypted and verified writes to any S3-compatible store.

Exceptions (each carries ``key``, ``operation``, ``code`` and ``retryable``; never a URL)::

    StorageError            an S3 operation failed
    ├── ObjectNotFound      the object does not exist (``get_bytes``)
    └── IntegrityError      what the store holds is not what was sent (size, sha256, encryption)

An exception raised by the caller's chunk iterator (the source download broke) propagates
unchanged, after the upload has been aborted.

Object keys are taken as given (build them with ``worker.keys.ObjectKeys``) and checked with
``validate_object_key``; ``settings.s3_prefix`` is applied by ``ObjectKeys``, not here.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from worker.keys import validate_object_key
from worker.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
DEFAULT_PART_SIZE = 8 * MIB
MIN_PART_SIZE = 5 * MIB  # S3's minimum for every part but the last
MAX_PART_SIZE = 5 * 1024 * MIB
MAX_PARTS = 10_000
# CopyObject (used to attach the sha256 to a multipart object) is limited to 5 GiB.
MAX_COPY_SIZE = 5 * 1024 * MIB
DEFAULT_MAX_GET_SIZE = 16 * MIB
SHA256_METADATA = "sha256"
SSE_MODES = ("AES256", "aws:kms", "none")

_RETRYABLE_CODES = frozenset(
    {"SlowDown", "RequestTimeout", "Throttling", "ThrottlingException", "InternalError",
     "ServiceUnavailable", "RequestTimeTooSkewed"}
)  # fmt: skip
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


class StorageError(Exception):
    """An S3 operation failed. ``code`` is the S3 error code (or the client error's name)."""

    def __init__(
        self, key: str | None, operation: str, code: str, *, retryable: bool = False
    ) -> None:
        self.key = key
        self.operation = operation
        self.code = code
        self.retryable = retryable
        super().__init__(f"S3 {operation} failed for {key!r}: {code}")


class ObjectNotFound(StorageError):
    """The object does not exist."""


class IntegrityError(StorageError):
    """The stored object differs from what was sent; the object has been deleted."""

    def __init__(self, key: str, check: str, expected: object, actual: object) -> None:
        self.check = check
        self.expected = expected
        self.actual = actual
        super().__init__(key, "verify", f"{check} mismatch", retryable=True)
        self.args = (f"S3 object {key!r} failed verification: {check} {actual!r} != {expected!r}",)


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
    ) -> StoredObject: ...

    def put_bytes(
        self, key: str, data: bytes, *, content_type: str, metadata: Mapping[str, str] | None = None
    ) -> StoredObject: ...

    def head(self, key: str) -> StoredObject | None: ...

    def get_bytes(self, key: str, *, max_size: int = DEFAULT_MAX_GET_SIZE) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

    def abort_stale_uploads(
        self, prefix: str, older_than_s: float, *, now: datetime | None = None
    ) -> int: ...

    def ensure_bucket(self) -> None: ...


def make_s3_client(
    settings: Settings,
    *,
    max_pool_connections: int = 16,
    connect_timeout: float = 5.0,
    read_timeout: float = 60.0,
    max_attempts: int = 5,
    session: boto3.session.Session | None = None,
) -> S3Client:
    """One S3 client for this process, from ``settings`` (thread-safe; share it).

    ``session`` lets callers that build many clients (tests) reuse loaded service models.
    """
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


def _error(exc: Exception, operation: str, key: str | None) -> StorageError:
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code") or "Unknown")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        retryable = status is None or status >= 500 or code in _RETRYABLE_CODES
        cls = ObjectNotFound if code in _NOT_FOUND_CODES else StorageError
        return cls(key, operation, code, retryable=retryable)
    # Connection errors and timeouts are worth a retry; a malformed request is not.
    retryable = not isinstance(exc, ParamValidationError)
    return StorageError(key, operation, type(exc).__name__, retryable=retryable)


@contextmanager
def _s3(operation: str, key: str | None) -> Iterator[None]:
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise _error(exc, operation, key) from exc


def _md5_b64(data: bytes | bytearray) -> str:
    # Content-MD5 lets the store reject a body damaged in transit.
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode("ascii")


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


class _Multipart:
    """One multipart upload in progress: parts are sent as they fill, aborted on failure."""

    def __init__(self, store: S3ObjectStore, key: str, upload_id: str) -> None:
        self.store = store
        self.key = key
        self.upload_id = upload_id
        self.parts: list[CompletedPartTypeDef] = []

    def send(self, body: bytearray) -> None:
        number = len(self.parts) + 1
        if number > MAX_PARTS:
            raise StorageError(self.key, "UploadPart", "TooManyParts")
        with _s3("UploadPart", self.key):
            resp = self.store.client.upload_part(
                Bucket=self.store.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=number,
                # botocore takes a bytearray as a blob; passing it avoids copying the part.
                Body=body,  # type: ignore[arg-type]
                ContentMD5=_md5_b64(body),
            )
        self.parts.append({"PartNumber": number, "ETag": resp["ETag"]})

    def complete(self) -> str:
        with _s3("CompleteMultipartUpload", self.key):
            resp = self.store.client.complete_multipart_upload(
                Bucket=self.store.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts},
            )
        return resp.get("ETag", "")

    def abort(self) -> None:
        try:
            self.store.client.abort_multipart_upload(
                Bucket=self.store.bucket, Key=self.key, UploadId=self.upload_id
            )
        except (ClientError, BotoCoreError) as exc:
            # abort_stale_uploads() sweeps what is left; the original error matters more.
            logger.warning("could not abort multipart upload of %s: %s", self.key, _error(
                exc, "AbortMultipartUpload", self.key).code)  # fmt: skip


class S3ObjectStore:
    """``ObjectStore`` on the S3 API (AWS S3, MinIO, moto), one bucket, encryption on writes."""

    def __init__(self, settings: Settings, *, client: S3Client | None = None) -> None:
        """A store on ``settings.s3_bucket``; builds its client unless one is passed."""
        if settings.s3_sse not in SSE_MODES:
            raise ValueError(
                f"s3_sse must be one of {', '.join(SSE_MODES)}, got {settings.s3_sse!r}"
            )
        self.client = client if client is not None else make_s3_client(settings)
        self.bucket = settings.s3_bucket
        self.sse = None if settings.s3_sse == "none" else settings.s3_sse
        self._sse: dict[str, Any] = {}
        if self.sse is not None:
            self._sse["ServerSideEncryption"] = self.sse
        if self.sse == "aws:kms" and settings.s3_kms_key_id:
            self._sse["SSEKMSKeyId"] = settings.s3_kms_key_id

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
    ) -> StoredObject:
        """Stream ``chunks`` to ``key`` in bounded memory and return the verified object.

        Memory: one ``part_size`` buffer plus the chunk being copied in. Payloads smaller than
        ``part_size`` go up as one PutObject, larger ones as a multipart upload that is aborted
        on any failure (including the iterator raising), so no partial object is ever visible.
        ``expected_size``/``expected_sha256`` are checked before the upload completes. The
        object's SHA-256 is stored as metadata ``sha256``; for multipart uploads without
        ``expected_sha256`` it is attached by an in-place copy after completion (so the object
        is briefly visible without it: an object lacking ``sha256`` is not a verified one).
        If anything fails once the object may have been written, the key is deleted, so a
        failed call leaves nothing there (re-stream from scratch to retry).
        """
        validate_object_key(key)
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise ValueError(f"part_size must be between {MIN_PART_SIZE} and {MAX_PART_SIZE}")
        meta = _user_metadata(metadata)
        if expected_sha256 is not None:
            expected_sha256 = expected_sha256.lower()
            meta[SHA256_METADATA] = expected_sha256
        hasher = hashlib.sha256()
        buf = bytearray(part_size)  # allocated once, refilled for every part
        fill = size = 0
        upload: _Multipart | None = None
        visible = False
        source = iter(chunks)
        try:
            for chunk in source:
                view = memoryview(chunk).cast("B")
                hasher.update(view)
                size += len(view)
                if expected_size is not None and size > expected_size:
                    raise IntegrityError(key, "size", expected_size, f">={size}")
                pos = 0
                while pos < len(view):
                    take = min(part_size - fill, len(view) - pos)
                    buf[fill : fill + take] = view[pos : pos + take]
                    fill += take
                    pos += take
                    if fill == part_size:
                        upload = upload or self._start_multipart(key, content_type, meta)
                        upload.send(buf)
                        fill = 0
            digest = hasher.hexdigest()
            if expected_size is not None and size != expected_size:
                raise IntegrityError(key, "size", expected_size, size)
            if expected_sha256 is not None and digest != expected_sha256:
                raise IntegrityError(key, "sha256", expected_sha256, digest)
            del buf[fill:]
            if upload is None:
                visible = True
                self._put_single(key, buf, content_type, {**meta, SHA256_METADATA: digest})
            else:
                if fill:
                    upload.send(buf)
                if expected_sha256 is None and size > MAX_COPY_SIZE:
                    raise StorageError(key, "CopyObject", "EntityTooLarge")
                visible = True
                etag = upload.complete()
                if expected_sha256 is None:
                    self._attach_sha256(key, etag, content_type, {**meta, SHA256_METADATA: digest})
            del buf
            return self._verify(key, size, digest)
        except BaseException:
            if visible:
                self._delete_quietly(key)
            elif upload is not None:
                upload.abort()
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
        digest = hashlib.sha256(data).hexdigest()
        meta = {**_user_metadata(metadata), SHA256_METADATA: digest}
        try:
            self._put_single(key, data, content_type, meta)
            return self._verify(key, len(data), digest)
        except BaseException:
            self._delete_quietly(key)
            raise

    def head(self, key: str) -> StoredObject | None:
        """What is stored under ``key``, or ``None`` if nothing is."""
        validate_object_key(key)
        try:
            with _s3("HeadObject", key):
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
        with _s3("GetObject", key):
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
        with _s3("DeleteObject", key):
            self.client.delete_object(Bucket=self.bucket, Key=key)

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
        with _s3("ListMultipartUploads", prefix):
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
                with _s3("AbortMultipartUpload", key):
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=key, UploadId=upload_id
                    )
                aborted += 1
            except StorageError as exc:
                if exc.code != "NoSuchUpload":  # finished or aborted meanwhile
                    raise
        return aborted

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (demo and tests; production buckets exist)."""
        try:
            with _s3("HeadBucket", None):
                self.client.head_bucket(Bucket=self.bucket)
            return
        except ObjectNotFound:
            pass
        region = self.client.meta.region_name
        try:
            with _s3("CreateBucket", None):
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

    # --- internals ---

    def _start_multipart(self, key: str, content_type: str, meta: dict[str, str]) -> _Multipart:
        with _s3("CreateMultipartUpload", key):
            resp = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType=content_type, Metadata=meta, **self._sse
            )
        return _Multipart(self, key, resp["UploadId"])

    def _put_single(
        self, key: str, body: bytes | bytearray, content_type: str, meta: dict[str, str]
    ) -> None:
        with _s3("PutObject", key):
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,  # type: ignore[arg-type]  # bytearray is a valid blob
                ContentType=content_type,
                ContentMD5=_md5_b64(body),
                Metadata=meta,
                **self._sse,
            )

    def _attach_sha256(self, key: str, etag: str, content_type: str, meta: dict[str, str]) -> None:
        # Metadata is fixed when a multipart upload starts, before the hash is known: replace it
        # by a server-side copy onto itself, only if the object is still the one just completed.
        with _s3("CopyObject", key):
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

    def _verify(self, key: str, size: int, digest: str) -> StoredObject:
        stored = self.head(key)
        if stored is None:
            raise IntegrityError(key, "presence", "stored", "missing")
        if stored.size != size:
            raise IntegrityError(key, "size", size, stored.size)
        if stored.sha256 != digest:
            raise IntegrityError(key, "sha256", digest, stored.sha256)
        if self.sse is not None and stored.encryption != self.sse:
            raise IntegrityError(key, "encryption", self.sse, stored.encryption)
        return stored

    def _delete_quietly(self, key: str) -> None:
        try:
            self.delete(key)
        except StorageError as exc:
            logger.warning("could not delete unverified object %s: %s", key, exc.code)
