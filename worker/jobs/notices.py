"""Outbound events as the services announce them: what happened, to what, at which version.

A service hands a ``Notice`` to its ``WorkSender`` (``notify``); ``CelerySender`` passes it on
by task name to ``idv.webhook.event``, and only when a webhook is configured. The webhook task
turns it into a Standard Webhooks event (``worker.events``) whose ``webhook-id`` is derived
from type, subject and version: a retry, or the same change announced twice (by the reconciler
and by a worker), carries the same id, and receivers de-duplicate on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

EventType = Literal[
    "onboarding.result",
    "onboarding.expired",
    "onboarding.abandoned",
    "batch.completed",
    "batch.paused",
    "batch.cancelled",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)


@dataclass(frozen=True, slots=True)
class Notice:
    """One change worth an event: ``subject`` is the transaction or batch id, ``version`` tells
    repeated changes of one subject apart (a batch paused twice), ``at`` is when it happened."""

    type: EventType
    subject: str
    version: str
    at: float
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_message(self) -> dict[str, Any]:
        """The JSON-able form a Celery message carries."""
        return {
            "type": self.type,
            "subject": self.subject,
            "version": self.version,
            "at": self.at,
            "data": dict(self.data),
        }

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> Notice:
        """The notice a message carries (``ValueError`` if it is not one)."""
        kind = message.get("type")
        if kind not in EVENT_TYPES:
            raise ValueError(f"unknown event type {kind!r}")
        data = message.get("data")
        if not isinstance(data, Mapping):
            raise ValueError("an event needs a data object")
        return cls(
            type=kind,
            subject=str(message["subject"]),
            version=str(message["version"]),
            at=float(message["at"]),
            data=dict(data),
        )


def transaction_ended(tid: str, state: str, *, at: float, reason: str | None) -> Notice:
    """``onboarding.expired`` / ``onboarding.abandoned``: a transaction's final state, once."""
    if state not in ("expired", "abandoned"):
        raise ValueError(f"no event for a transaction ending {state!r}")
    return Notice(
        type="onboarding.expired" if state == "expired" else "onboarding.abandoned",
        subject=tid,
        version="1",  # a final state is reached once per transaction
        at=at,
        data={"transaction_id": tid, "state": state, "reason": reason},
    )


def event_id(kind: str, subject: str, version: str) -> str:
    """The ``webhook-id`` of an event: derived, so every attempt and every announcement of one
    change carry the same id."""
    digest = hashlib.sha256(f"{kind}\n{subject}\n{version}".encode()).hexdigest()
    return f"evt_{digest[:32]}"
