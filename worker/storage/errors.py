"""Errors of the S3 adapter (``worker.storage``) and the translation of botocore's into them.

Each carries ``key``, ``operation``, ``code`` and ``retryable``; never a URL::

    StorageError            an S3 operation failed
    ├── ObjectNotFound      the object does not exist (``get_bytes``)
    └── IntegrityError      what the store holds is not what was sent (size, sha256, encryption)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from worker.errors import IdvError

_RETRYABLE_CODES = frozenset(
    {"SlowDown", "RequestTimeout", "Throttling", "ThrottlingException", "InternalError",
     "ServiceUnavailable", "RequestTimeTooSkewed"}
)  # fmt: skip
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


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


def s3_error(exc: Exception, operation: str, key: str | None) -> StorageError:
    """The ``StorageError`` for a botocore exception raised by ``operation`` on ``key``."""
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
def s3_call(operation: str, key: str | None) -> Iterator[None]:
    """Turn botocore exceptions raised inside the block into ``StorageError``."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise s3_error(exc, operation, key) from exc
