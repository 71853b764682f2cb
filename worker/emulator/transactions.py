"""Transactions created by ``Initialize`` (or the control API) and completed by the control API.

Which parts a product's result has, and which outcomes it can have: ``worker.emulator.products``.
"""

from __future__ import annotations

import heapq
import os
import re
from dataclasses import dataclass, field
from typing import Any

from worker.emulator.doctypes import EMBLEM_SIDE, FACE_SIDE, MAINLAND_ID, derive_fields
from worker.emulator.products import OCR_FAILED, SPOOFED, product

MERCHANT_BIZ_ID = re.compile(r"[A-Za-z0-9]{1,32}")
DEFAULT_DOC_TYPE = "00000006"


def new_transaction_id() -> str:
    """32 characters: ``hk`` and 30 lowercase hex digits, like the provider's ids."""
    return "hk" + os.urandom(15).hex()


def has_face(product_code: str) -> bool:
    return product(product_code).face


def has_id(product_code: str) -> bool:
    return product(product_code).ids


@dataclass
class CallbackAttempt:
    """One delivery attempt of a callback (``status`` None when no HTTP answer came)."""

    attempt: int
    at: float
    status: int | None
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"attempt": self.attempt, "at": self.at, "status": self.status, "error": self.error}


@dataclass
class Transaction:
    """One verification flow; times are emulated epoch seconds."""

    transaction_id: str
    product_code: str
    merchant_biz_id: str
    merchant_user_id: str
    created_at: float
    callback_url: str | None = None
    callback_token: str | None = None
    doc_type: str | None = None
    id_spoof: bool = False
    auto_registration: bool = False
    completed_at: float | None = None
    passed: str | None = None
    sub_code: str | None = None
    video_size: int = 0
    video_sha256: str | None = None
    face_extra: dict[str, Any] = field(default_factory=dict)
    id_fields: dict[str, str] | None = None
    id_back_fields: dict[str, str] | None = None
    spoof_type: list[str] = field(default_factory=list)
    duplicate_face: list[dict[str, Any]] | None = None
    image_sha256: dict[str, str] = field(default_factory=dict)
    callbacks: list[CallbackAttempt] = field(default_factory=list)
    callback_state: str = "none"
    completing: bool = False

    @property
    def completed(self) -> bool:
        return self.completed_at is not None

    @property
    def ocr_passed(self) -> bool:
        """The ID document phase succeeded (``ocrIdPassed=Y``)."""
        return self.sub_code not in (*OCR_FAILED, SPOOFED)

    def returned_images(self) -> tuple[str, ...]:
        """Images ``CheckResult`` returns with ``IsReturnImage=Y``: only of a phase that succeeded.

        ``faceImg`` when the face scan completed successfully (``Passed=Y``; seed 001),
        ``idImage``/``idBackImage`` when the ID OCR did (seed 000).
        """
        names: list[str] = []
        if has_face(self.product_code) and self.passed == "Y":
            names.append("faceImg")
        if self.id_fields is not None and self.ocr_passed:
            names.append("idImage")
            if self.id_back_fields is not None:
                names.append("idBackImage")
        return tuple(names)

    def expired(self, now: float, retention: float) -> bool:
        """Past retention: 30 days after completion (or creation, if it never completed)."""
        return now > (self.completed_at or self.created_at) + retention

    def fill_id_fields(self, overrides: dict[str, Any] | None) -> None:
        """Derive the OCR fields from the transaction id, then apply ``overrides``."""
        if not has_id(self.product_code):
            return
        doc_type = self.doc_type or DEFAULT_DOC_TYPE
        seed = self.transaction_id.encode()
        front = derive_fields(doc_type, FACE_SIDE, seed)
        for key, value in (overrides or {}).items():
            front[str(key)] = str(value)
        self.id_fields = front
        if doc_type == MAINLAND_ID:
            back = derive_fields(doc_type, EMBLEM_SIDE, seed)
            # CheckResult names the back-side expiry ``expireDate`` (seed 000, ocrIdBackInfo).
            back["expireDate"] = back.pop("expiryDate")
            self.id_back_fields = back

    def state(self) -> dict[str, Any]:
        """Control-API view (includes merchant ids: this surface is for tests only)."""
        return {
            "transaction_id": self.transaction_id,
            "product_code": self.product_code,
            "merchant_biz_id": self.merchant_biz_id,
            "doc_type": self.doc_type,
            "id_spoof": self.id_spoof,
            "auto_registration": self.auto_registration,
            "created_at": self.created_at,
            "completed": self.completed,
            "completed_at": self.completed_at,
            "passed": self.passed,
            "sub_code": self.sub_code,
            "video_size": self.video_size,
            "video_sha256": self.video_sha256,
            "images": dict(self.image_sha256),
            "callback_url_set": self.callback_url is not None,
            "callback_state": self.callback_state,
            "callbacks": [a.as_dict() for a in self.callbacks],
        }


class TransactionStore:
    """In-memory transactions by id, deleted once past retention (emulated clock).

    ``purge`` deletes every transaction past retention; the emulator calls it from a background
    sweep and whenever the clock is moved, so results disappear at day 30 whether or not anyone
    asks for them. ``get`` never returns a transaction past retention either.
    """

    def __init__(self, retention: float) -> None:
        self.retention = retention
        self.deleted = 0
        self._items: dict[str, Transaction] = {}
        # (deadline, id) candidates; a completion pushes a later deadline for the same id.
        self._deadlines: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._items)

    def add(self, tx: Transaction) -> None:
        self._items[tx.transaction_id] = tx
        heapq.heappush(self._deadlines, (tx.created_at + self.retention, tx.transaction_id))

    def completed(self, tx: Transaction) -> None:
        """Re-arm the deletion of ``tx``: retention now counts from its completion."""
        assert tx.completed_at is not None
        heapq.heappush(self._deadlines, (tx.completed_at + self.retention, tx.transaction_id))

    def get(self, transaction_id: str, now: float) -> Transaction | None:
        tx = self._items.get(transaction_id)
        if tx is not None and tx.expired(now, self.retention):
            self._delete(transaction_id)
            return None
        return tx

    def purge(self, now: float) -> list[str]:
        """Delete every transaction past retention at ``now``; returns their ids."""
        gone: list[str] = []
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] < now:
            _, transaction_id = heapq.heappop(deadlines)
            tx = self._items.get(transaction_id)
            if tx is not None and tx.expired(now, self.retention):
                self._delete(transaction_id)
                gone.append(transaction_id)
        return gone

    def _delete(self, transaction_id: str) -> None:
        del self._items[transaction_id]
        self.deleted += 1

    def all(self) -> list[Transaction]:
        return list(self._items.values())

    def completed_count(self) -> int:
        return sum(1 for tx in self._items.values() if tx.completed)

    def clear(self) -> None:
        self._items.clear()
        self._deadlines.clear()
        self.deleted = 0
