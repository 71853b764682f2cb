"""Adapters of the records the worker keeps in Redis: result records and their stream, dead
letters, leases (and the heartbeat that renews them, with its takeover index), the index of
open multipart uploads, the merchant-user index.
"""

from __future__ import annotations

from worker.stores.deadletters import (
    MAX_DETAIL_LENGTH,
    MAX_PAYLOAD_BYTES,
    MAX_REASON_LENGTH,
    DeadLetter,
    DeadLetterStore,
    NoRetryHandler,
    RetryFn,
)
from worker.stores.leases import (
    Lease,
    LeaseBusy,
    LeaseManager,
)
from worker.stores.results import (
    MAX_EVENT_FIELDS,
    MAX_EVENT_VALUE_LENGTH,
    EventError,
    ResultStore,
    encode_event,
)
from worker.stores.subjects import (
    DEVELOPMENT_SUBJECT_KEY,
    KIND_SUBJECT_BATCH,
    KIND_SUBJECT_TX,
    Pseudonyms,
    SubjectIndex,
)
from worker.stores.takeover import (
    DueIndex,
    Heartbeat,
    HeartbeatLease,
    HeartbeatLeases,
    Held,
    lease_member,
)
from worker.stores.uploads import TrackedUpload, UploadRegistry

__all__ = [
    "DEVELOPMENT_SUBJECT_KEY",
    "KIND_SUBJECT_BATCH",
    "KIND_SUBJECT_TX",
    "MAX_DETAIL_LENGTH",
    "MAX_EVENT_FIELDS",
    "MAX_EVENT_VALUE_LENGTH",
    "MAX_PAYLOAD_BYTES",
    "MAX_REASON_LENGTH",
    "DeadLetter",
    "DeadLetterStore",
    "DueIndex",
    "EventError",
    "Heartbeat",
    "HeartbeatLease",
    "HeartbeatLeases",
    "Held",
    "Lease",
    "LeaseBusy",
    "LeaseManager",
    "NoRetryHandler",
    "Pseudonyms",
    "ResultStore",
    "RetryFn",
    "SubjectIndex",
    "TrackedUpload",
    "UploadRegistry",
    "encode_event",
    "lease_member",
]
