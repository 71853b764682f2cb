"""The callback receiver (ASGI): routing and lifespan (``app``), bounded request reading and
answers (``http``), per-client limits (``limits``). See ``worker.receiver.app``."""

from __future__ import annotations

from worker.receiver.app import CallbackReceiver, create_receiver_app
from worker.receiver.http import MAX_FIELDS
from worker.receiver.limits import (
    MAX_HEADER_BYTES,
    MAX_TRACKED_ADDRESSES,
    RejectLimiter,
    guarded_h11_protocol,
)

__all__ = [
    "MAX_FIELDS",
    "MAX_HEADER_BYTES",
    "MAX_TRACKED_ADDRESSES",
    "CallbackReceiver",
    "RejectLimiter",
    "create_receiver_app",
    "guarded_h11_protocol",
]
