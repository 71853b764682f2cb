"""The three provider operations: ``Initialize``, ``CheckResult`` and ``DocOcrV2``.

Each action first names the product code its call is counted against (quota and stats), then
runs. Both steps raise ``ApiError`` for answers other than success. ``CheckResult`` is built in
``results``, ``DocOcrV2`` in ``dococr``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from worker.emulator.call import Call, check_merchant_biz_id, doc_type_param, to_json
from worker.emulator.dococr import run_doc_ocr
from worker.emulator.errors import ApiError, invalid
from worker.emulator.results import run_check_result
from worker.emulator.transactions import Transaction, new_transaction_id

OCR_PRODUCT = "ID_OCR_MIN"

# --- product resolution ---------------------------------------------------------------


def product_initialize(call: Call) -> str:
    product = call.require("ProductCode")
    if not call.state.quotas.knows(product):
        raise invalid("ProductCode")
    return product


def product_doc_ocr(call: Call) -> str:
    product = call.require("ProductCode")
    if product != OCR_PRODUCT:
        raise invalid("ProductCode", f"DocOcrV2 takes ProductCode {OCR_PRODUCT}.")
    return product


def product_check_result(call: Call) -> str:
    transaction_id = call.require("TransactionId")
    call.require("MerchantBizId")
    state = call.state
    tx = state.store.get(transaction_id, state.clock.now())
    if tx is None:
        raise ApiError("TransactionIdInvalid")
    call.transaction = tx
    return tx.product_code


# --- Initialize -----------------------------------------------------------------------


def check_callback_url(url: str) -> None:
    """http(s) URL with a host. The real service requires https; http is allowed for loopback."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid("CallbackUrl", "It must be an http(s) URL.")


def _yes(call: Call, name: str) -> bool:
    value = call.params.get(name) or "N"
    if value not in ("Y", "N"):
        raise invalid(name, "Use Y or N.")
    return value == "Y"


async def run_initialize(call: Call) -> dict[str, Any]:
    product = call.params["ProductCode"]
    check_merchant_biz_id(call)
    user = call.require("MerchantUserId")
    callback = call.params.get("CallbackUrl") or None
    if callback is not None:
        check_callback_url(callback)
    doc_type = call.params.get("DocType") or None
    state = call.state
    tx = Transaction(
        transaction_id=new_transaction_id(),
        product_code=product,
        merchant_biz_id=call.params["MerchantBizId"],
        merchant_user_id=user,
        created_at=state.clock.now(),
        callback_url=callback,
        callback_token=call.params.get("CallbackToken") or None,
        doc_type=doc_type_param(doc_type) if doc_type else None,
        id_spoof=_yes(call, "IdSpoof"),
        auto_registration=_yes(call, "AutoRegistration"),
    )
    state.store.add(tx)
    digest = hashlib.sha256(tx.transaction_id.encode()).hexdigest()
    return {
        "TransactionId": tx.transaction_id,
        "TransactionUrl": f"http://{call.host}/_emulator/flow/{tx.transaction_id}",
        "Protocol": "hksb" + digest[:28],
        "ClientCfg": base64.b64encode(to_json({"tid": tx.transaction_id}).encode()).decode(),
    }


@dataclass(frozen=True)
class ActionSpec:
    product: Callable[[Call], str]
    run: Callable[[Call], Awaitable[dict[str, Any]]]


ACTIONS: dict[str, ActionSpec] = {
    "Initialize": ActionSpec(product_initialize, run_initialize),
    "CheckResult": ActionSpec(product_check_result, run_check_result),
    "DocOcrV2": ActionSpec(product_doc_ocr, run_doc_ocr),
}
