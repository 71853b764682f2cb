"""Per-call counters a test reads to prove what was billed: by transaction and by business id.

``CheckResult`` calls are counted per ``TransactionId`` and split by ``IsReturnImage`` (``Y`` or
``N``, the default); ``DocOcrV2`` calls per ``MerchantBizId``. Only calls that passed the
signature check are counted. ``success`` counts calls whose operation ran and produced a result
(the billed ones, a truncated answer included); ``throttled`` the ``Throttling.Api`` answers;
``errors`` every other answer (provider errors and injected faults, which strike before the
operation runs). ``MerchantUserId`` lists every merchant user id received, by action (what the
provider would learn of the caller's users).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OUTCOMES = ("success", "throttled", "error")


@dataclass
class CallCounts:
    calls: int = 0
    success: int = 0
    throttled: int = 0
    errors: int = 0

    def add(self, outcome: str) -> None:
        self.calls += 1
        if outcome == "success":
            self.success += 1
        elif outcome == "throttled":
            self.throttled += 1
        else:
            self.errors += 1

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def return_image_flag(params: dict[str, str]) -> str:
    return "Y" if params.get("IsReturnImage") == "Y" else "N"


class CallLog:
    """Counters of ``CheckResult`` by (transaction, IsReturnImage) and ``DocOcrV2`` by biz id."""

    def __init__(self) -> None:
        self.check_result: dict[str, dict[str, CallCounts]] = {}
        self.doc_ocr: dict[str, CallCounts] = {}
        # Every MerchantUserId received, by action (what the provider learns of the caller's users).
        self.merchant_user_ids: dict[str, set[str]] = {}

    def record(self, action: str, params: dict[str, str], outcome: str) -> None:
        user = params.get("MerchantUserId")
        if user:
            self.merchant_user_ids.setdefault(action, set()).add(user)
        if action == "CheckResult":
            transaction_id = params.get("TransactionId")
            if transaction_id:
                split = self.check_result.setdefault(transaction_id, {})
                split.setdefault(return_image_flag(params), CallCounts()).add(outcome)
        elif action == "DocOcrV2":
            biz = params.get("MerchantBizId")
            if biz:
                self.doc_ocr.setdefault(biz, CallCounts()).add(outcome)

    def check_result_of(self, transaction_id: str) -> dict[str, dict[str, int]]:
        split = self.check_result.get(transaction_id, {})
        return {flag: split.get(flag, CallCounts()).as_dict() for flag in ("Y", "N")}

    def doc_ocr_of(self, merchant_biz_id: str) -> dict[str, int]:
        return self.doc_ocr.get(merchant_biz_id, CallCounts()).as_dict()

    def snapshot(self) -> dict[str, Any]:
        return {
            "CheckResult": {tid: self.check_result_of(tid) for tid in self.check_result},
            "DocOcrV2": {biz: counts.as_dict() for biz, counts in self.doc_ocr.items()},
            "MerchantUserId": {a: sorted(ids) for a, ids in self.merchant_user_ids.items()},
        }

    def clear(self) -> None:
        self.check_result.clear()
        self.doc_ocr.clear()
        self.merchant_user_ids.clear()
