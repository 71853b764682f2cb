"""Every Redis key and S3 object key the worker writes, built in one place.

Ids that end up in a key (transaction ids, batch and item ids) come from outside, some of them
from unsigned callbacks, so each one is validated before it is used: charset ``[A-Za-z0-9_.-]``,
at most ``MAX_ID_LENGTH`` characters, no ``..`` and no leading dot. A hostile id therefore can
neither leave its prefix in S3 nor alias another record in Redis.

Redis (``ns`` is ``settings.namespace``, default ``idv:``)::

    <ns>result:tx:<tid>                 result record of one transaction (TTL)
    <ns>result:item:<batch>:<item>      result record of one batch item (TTL)
    <ns>results                         results stream (capped by MAXLEN)
    <ns>dlq:entry:<kind>:<ref>          one dead letter (hash, permanent)
    <ns>dlq:index                       all dead letters by time (sorted set)
    <ns>dlq:kind:<kind>                 dead letters of one kind by time (sorted set)
    <ns>lease:<kind>:<ref>              lease on one item (TTL)
    <ns>cb:<tid>                        callback de-duplication (TTL)

A *ref* is one id, or several ids joined with ``:`` (``item_ref(batch, item)``); a *kind* is a
short lower-case word (``tx``, ``item``, ``ocr``...). The sub-namespaces never overlap, so no
kind or id can make one key look like another.

S3 (``prefix`` is ``settings.s3_prefix``; the date is the transaction's completion time in UTC;
the folder names are ``worker.settings.WORKER_FOLDERS``)::

    <prefix>evidence/<yyyy>/<mm>/<dd>/<tid>/video.webm | face.jpg | id-front.jpg | id-back.jpg
    <prefix>results/<yyyy>/<mm>/<dd>/<tid>.json
    <prefix>batches/<batch_id>/results.jsonl
    <prefix>batches/<batch_id>/items/<item_id>.json   OCR result of one batch item
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from worker.errors import InvalidInput
from worker.settings import (
    BATCHES_FOLDER,
    EVIDENCE_FOLDER,
    RESULTS_FOLDER,
    WORKER_FOLDERS,
    key_folder,
)

MAX_ID_LENGTH = 128
MAX_TRANSACTION_ID = 64
"""The provider's ids are 32 hex characters with a short region prefix; 64 leaves room and keeps
hostile input (callbacks are unauthenticated GETs) from making long keys."""
MAX_KIND_LENGTH = 32
MAX_REF_PARTS = 4
# S3's own limit on a key, in UTF-8 bytes.
MAX_OBJECT_KEY_BYTES = 1024

_ID_RE = re.compile(r"[A-Za-z0-9_.-]+")
_KIND_RE = re.compile(r"[a-z][a-z0-9_-]*")

KIND_TX = "tx"
KIND_ITEM = "item"


class InvalidKeyError(InvalidInput):
    """An id, kind or object key that must not be used in a key.

    Carries what was checked (``field``) and why (``reason``); the offending value itself is
    not repeated, since it may be arbitrary text from an untrusted request.
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"invalid {field}: {reason}")


class Evidence(StrEnum):
    """File names of the evidence objects stored for one transaction."""

    VIDEO = "video.webm"
    FACE = "face.jpg"
    ID_FRONT = "id-front.jpg"
    ID_BACK = "id-back.jpg"


def validate_id(value: str, field: str = "id") -> str:
    """Return ``value`` if it is safe as one segment of a key, else raise ``InvalidKeyError``."""
    if not isinstance(value, str):
        raise InvalidKeyError(field, "must be a string")
    if not value:
        raise InvalidKeyError(field, "must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidKeyError(field, f"longer than {MAX_ID_LENGTH} characters")
    if not _ID_RE.fullmatch(value):
        raise InvalidKeyError(field, "only letters, digits, '_', '.' and '-' are allowed")
    if ".." in value:
        raise InvalidKeyError(field, "must not contain '..'")
    if value.startswith("."):
        raise InvalidKeyError(field, "must not start with '.'")
    return value


def parse_transaction_id(value: object, field: str = "transactionId") -> str:
    """The one rule for a transaction id, applied once at every edge (callbacks, messages,
    imports, the client): 1 to ``MAX_TRANSACTION_ID`` of ``[A-Za-z0-9_.-]``, safe in a key."""
    if isinstance(value, str) and len(value) > MAX_TRANSACTION_ID:
        raise InvalidKeyError(field, f"longer than {MAX_TRANSACTION_ID} characters")
    return validate_id(value, field)  # type: ignore[arg-type]


def validate_kind(value: str) -> str:
    """Return ``value`` if it is a valid kind (lower-case word), else raise."""
    if not isinstance(value, str) or not value:
        raise InvalidKeyError("kind", "must be a non-empty string")
    if len(value) > MAX_KIND_LENGTH:
        raise InvalidKeyError("kind", f"longer than {MAX_KIND_LENGTH} characters")
    if not _KIND_RE.fullmatch(value):
        raise InvalidKeyError("kind", "must be lower-case letters, digits, '_' or '-'")
    return value


def validate_ref(value: str, field: str = "id") -> str:
    """Validate a ref: one id, or up to ``MAX_REF_PARTS`` ids joined with ``:``."""
    if not isinstance(value, str):
        raise InvalidKeyError(field, "must be a string")
    parts = value.split(":")
    if len(parts) > MAX_REF_PARTS:
        raise InvalidKeyError(field, f"more than {MAX_REF_PARTS} ':'-separated parts")
    for part in parts:
        validate_id(part, field)
    return value


def item_ref(batch_id: str, item_id: str) -> str:
    """The ref of one batch item: ``<batch>:<item>``, both validated."""
    return f"{validate_id(batch_id, 'batch_id')}:{validate_id(item_id, 'item_id')}"


def validate_object_key(key: str) -> str:
    """Return ``key`` if it is a safe S3 object key (or prefix), else raise.

    Rejects empty keys, a leading ``/``, empty, ``.`` or ``..`` segments, backslashes and
    control characters: S3 itself treats them literally, but file-system backed stores
    (MinIO) and tools that mirror a bucket to disk do not.
    """
    if not isinstance(key, str) or not key:
        raise InvalidKeyError("object key", "must be a non-empty string")
    if len(key.encode("utf-8")) > MAX_OBJECT_KEY_BYTES:
        raise InvalidKeyError("object key", f"longer than {MAX_OBJECT_KEY_BYTES} bytes")
    if key.startswith("/"):
        raise InvalidKeyError("object key", "must not start with '/'")
    if "\\" in key or any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        raise InvalidKeyError("object key", "must not contain backslashes or control characters")
    segments = key.split("/")
    # A trailing "/" (a prefix) leaves one empty last segment, which is fine.
    if segments[-1] == "":
        segments = segments[:-1]
    for segment in segments:
        if segment in {"", ".", ".."}:
            raise InvalidKeyError("object key", "empty, '.' or '..' path segment")
    return key


def normalize_prefix(prefix: str) -> str:
    """``""`` stays empty; anything else becomes ``a/b/`` (no leading, one trailing slash)."""
    folder = key_folder(prefix)
    if folder:
        validate_object_key(folder[:-1])
    return folder


def _date_path(completed_at: datetime) -> str:
    if completed_at.tzinfo is None or completed_at.utcoffset() is None:
        # A naive time would give different keys on hosts in different zones.
        raise ValueError("completed_at must be timezone-aware")
    day = completed_at.astimezone(UTC)
    return f"{day.year:04d}/{day.month:02d}/{day.day:02d}"


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Redis key names under one namespace (``IDV_NAMESPACE``)."""

    namespace: str = "idv:"

    def result(self, kind: str, ref: str) -> str:
        """Result record of ``kind``/``ref``, e.g. ``idv:result:tx:<tid>``."""
        return f"{self.namespace}result:{validate_kind(kind)}:{validate_ref(ref)}"

    def result_tx(self, transaction_id: str) -> str:
        """Result record of one transaction: ``idv:result:tx:<tid>``."""
        return self.result(KIND_TX, validate_id(transaction_id, "transaction_id"))

    def result_item(self, batch_id: str, item_id: str) -> str:
        """Result record of one batch item: ``idv:result:item:<batch>:<item>``."""
        return self.result(KIND_ITEM, item_ref(batch_id, item_id))

    @property
    def results_stream(self) -> str:
        """The stream every finished result is announced on: ``idv:results``."""
        return f"{self.namespace}results"

    def deadletter(self, kind: str, ref: str) -> str:
        """Hash holding one dead letter."""
        return f"{self.namespace}dlq:entry:{validate_kind(kind)}:{validate_ref(ref)}"

    @property
    def deadletter_index(self) -> str:
        """Sorted set of every dead letter (member ``<kind>:<ref>``, score = last failure)."""
        return f"{self.namespace}dlq:index"

    def deadletter_kind_index(self, kind: str) -> str:
        """Sorted set of the dead letters of one kind (member ``<ref>``)."""
        return f"{self.namespace}dlq:kind:{validate_kind(kind)}"

    def lease(self, kind: str, ref: str) -> str:
        """Lease on one item: ``idv:lease:<kind>:<ref>``."""
        return f"{self.namespace}lease:{validate_kind(kind)}:{validate_ref(ref)}"

    @property
    def s3_uploads(self) -> str:
        """Sorted set of the multipart uploads started and not ended (score = start time)."""
        return f"{self.namespace}s3:uploads"


@dataclass(frozen=True, slots=True)
class ObjectKeys:
    """Deterministic S3 object keys under one prefix (``IDV_S3_PREFIX``)."""

    prefix: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", normalize_prefix(self.prefix))

    @property
    def written_folders(self) -> tuple[str, ...]:
        """Every folder the worker writes under this prefix (``WORKER_FOLDERS``)."""
        return tuple(self.prefix + folder for folder in WORKER_FOLDERS)

    def evidence(self, transaction_id: str, completed_at: datetime, name: Evidence) -> str:
        """``<prefix>evidence/<yyyy>/<mm>/<dd>/<tid>/<name>``, dated by completion (UTC)."""
        tid = validate_id(transaction_id, "transaction_id")
        day = _date_path(completed_at)
        return f"{self.prefix}{EVIDENCE_FOLDER}{day}/{tid}/{Evidence(name).value}"

    def evidence_prefix(self, transaction_id: str, completed_at: datetime) -> str:
        """The folder holding every evidence object of one transaction (ends with ``/``)."""
        tid = validate_id(transaction_id, "transaction_id")
        return f"{self.prefix}{EVIDENCE_FOLDER}{_date_path(completed_at)}/{tid}/"

    def result(self, transaction_id: str, completed_at: datetime) -> str:
        """``<prefix>results/<yyyy>/<mm>/<dd>/<tid>.json``."""
        tid = validate_id(transaction_id, "transaction_id")
        return f"{self.prefix}{RESULTS_FOLDER}{_date_path(completed_at)}/{tid}.json"

    def batch_item(self, batch_id: str, item_id: str) -> str:
        """``<prefix>batches/<batch_id>/items/<item_id>.json``: one item's OCR result."""
        batch, item = validate_id(batch_id, "batch_id"), validate_id(item_id, "item_id")
        return f"{self.prefix}{BATCHES_FOLDER}{batch}/items/{item}.json"

    def batch_prefix(self, batch_id: str) -> str:
        """Every object of one batch (ends with ``/``)."""
        return f"{self.prefix}{BATCHES_FOLDER}{validate_id(batch_id, 'batch_id')}/"

    def batch_results(self, batch_id: str) -> str:
        """``<prefix>batches/<batch_id>/results.jsonl``."""
        return f"{self.prefix}{BATCHES_FOLDER}{validate_id(batch_id, 'batch_id')}/results.jsonl"
