"""Errors of the S3 adapter (``worker.storage``) and the translation of botocore's into them.

Each carries ``key``, ``operation``, ``code`` and ``retryable``; never a URL::

    StorageError              an S3 operation failed
    ├── ObjectNotFound        the object does not exist (``get_bytes``)
    ├── IntegrityError        what the store holds is not what was sent (size, sha256): retryable
    ├── NotSupported          the store does not implement the operation (HTTP 501/405): not
    │                         retried; ``abort``/sweeps treat it as a limitation of the store
    └── StoreMisconfigured    (also a ``ConfigurationError``) the store cannot work as configured:
         │                    not retried, alerts, stops the lane; ``fix`` says what to change
         └── EncryptionNotApplied  the object does not report the configured SSE (strict mode)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from worker.errors import ConfigurationError, IdvError

_RETRYABLE_CODES = frozenset(
    {"SlowDown", "RequestTimeout", "Throttling", "ThrottlingException", "InternalError",
     "ServiceUnavailable", "RequestTimeTooSkewed"}
)  # fmt: skip
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
# A store that lacks an operation says so with 501 NotImplemented (s3rver: UploadPartCopy,
# ListMultipartUploads; MinIO: SSE-S3 without a KMS) or 405 (s3rver: AbortMultipartUpload).
_NOT_SUPPORTED_CODES = frozenset({"NotImplemented", "MethodNotAllowed", "501", "405"})


class StorageError(IdvError):
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


class NotSupported(StorageError):
    """The store does not implement this operation (or this header of it): never retried."""


class StoreMisconfigured(StorageError, ConfigurationError):
    """The store cannot work as configured: not retried, alerts, stops the lane.

    ``fix`` is the one line an operator needs (it names the ``IDV_`` variable to change).
    """

    stops_lane = True

    def __init__(self, key: str | None, operation: str, code: str, fix: str) -> None:
        super().__init__(key, operation, code, retryable=False)
        self.fix = fix
        self.args = (f"S3 {operation} for {key!r}: {code}: {fix}",)


class EncryptionNotApplied(StoreMisconfigured):
    """The stored object does not report the server-side encryption it was written with."""

    def __init__(self, key: str, expected: str, actual: str | None, fix: str) -> None:
        self.check = "encryption"
        self.expected = expected
        self.actual = actual
        super().__init__(key, "verify", "EncryptionNotApplied", fix)
        self.args = (f"S3 object {key!r} reports encryption {actual!r}, not {expected!r}: {fix}",)


def s3_error(exc: Exception, operation: str, key: str | None) -> StorageError:
    """The ``StorageError`` for a botocore exception raised by ``operation`` on ``key``."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code") or "Unknown")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        retryable = status is None or status >= 500 or code in _RETRYABLE_CODES
        if code in _NOT_SUPPORTED_CODES or status in (405, 501):
            return NotSupported(key, operation, code, retryable=False)
        cls = ObjectNotFound if code in _NOT_FOUND_CODES else StorageError
        return cls(key, operation, code, retryable=retryable)
    # Connection errors and timeouts are worth a retry; a malformed request is not.
    retryable = not isinstance(exc, ParamValidationError)
    return StorageError(key, operation, type(exc).__name__, retryable=retryable)


@contextmanager
def s3_call(operation: str, key: str | None) -> Iterator[None]:
    """Turn botocore exceptions raised inside the block into ``StorageError``."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise s3_error(exc, operation, key) from exc
