"""One provider API call as the operations see it, and the parameter checks they share."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from worker.emulator.doctypes import canonical_doc_type
from worker.emulator.errors import invalid, missing
from worker.emulator.state import EmulatorState
from worker.emulator.transactions import MERCHANT_BIZ_ID, Transaction


@dataclass
class Call:
    """One provider API call: merged parameters and where the caller reached us."""

    action: str
    params: dict[str, str]
    host: str
    state: EmulatorState
    transaction: Transaction | None = None

    def require(self, name: str) -> str:
        value = self.params.get(name)
        if not value:
            raise missing(name)
        return value


def to_json(value: Any) -> str:
    """Compact JSON, as the provider writes the ``Ext*`` strings."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def check_merchant_biz_id(call: Call) -> None:
    if not MERCHANT_BIZ_ID.fullmatch(call.require("MerchantBizId")):
        raise invalid("MerchantBizId", "Use up to 32 letters and digits.")


def doc_type_param(value: str) -> str:
    code = canonical_doc_type(value)
    if code is None:
        raise invalid("DocType")
    return code
