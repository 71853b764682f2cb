"""The three provider operations: ``Initialize``, ``CheckResult`` and ``DocOcrV2``.

Each action first names the product code its call is counted against (quota and stats), then
runs. Both steps raise ``ApiError`` for answers other than success.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import ipaddress
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from worker.emulator.doctypes import (
    CARD_SIDES,
    FACE_SIDE,
    MAINLAND_ID,
    canonical_doc_type,
    derive_fields,
)
from worker.emulator.errors import ApiError, invalid, missing
from worker.emulator.imagecheck import validate_ocr_image
from worker.emulator.media import EvidenceImages, build_images
from worker.emulator.state import EmulatorState
from worker.emulator.transactions import (
    MERCHANT_BIZ_ID,
    Transaction,
    has_face,
    has_id,
    new_transaction_id,
)

OCR_PRODUCT = "ID_OCR_MIN"
_FLAGS = ("T", "F")


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


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _merchant_biz_id(call: Call) -> None:
    if not MERCHANT_BIZ_ID.fullmatch(call.require("MerchantBizId")):
        raise invalid("MerchantBizId", "Use up to 32 letters and digits.")


def _doc_type(value: str) -> str:
    code = canonical_doc_type(value)
    if code is None:
        raise invalid("DocType")
    return code


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


async def run_initialize(call: Call) -> dict[str, Any]:
    product = call.params["ProductCode"]
    _merchant_biz_id(call)
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
        doc_type=_doc_type(doc_type) if doc_type else None,
    )
    state.store.add(tx)
    digest = hashlib.sha256(tx.transaction_id.encode()).hexdigest()
    return {
        "TransactionId": tx.transaction_id,
        "TransactionUrl": f"http://{call.host}/_emulator/flow/{tx.transaction_id}",
        "Protocol": "hksb" + digest[:28],
        "ClientCfg": base64.b64encode(_json({"tid": tx.transaction_id}).encode()).decode(),
    }


# --- CheckResult ----------------------------------------------------------------------


async def transaction_images(state: EmulatorState, tx: Transaction) -> EvidenceImages:
    """The transaction's pictures, rendered again if they fell out of the cache."""
    found = state.images.get(tx.transaction_id)
    if found is None:
        found = await asyncio.to_thread(
            build_images,
            tx.transaction_id,
            (tx.doc_type or "00000006") if tx.id_fields is not None else None,
            tx.id_fields,
            tx.id_back_fields,
            has_face(tx.product_code),
        )
        state.images.put(tx.transaction_id, found)
    return found


def evidence_link(state: EmulatorState, host: str, tx: Transaction, now: float) -> str:
    expires = int(now + state.config.link_validity)
    signature = state.link_signature(tx.transaction_id, expires)
    return (
        f"http://{host}/evidence/{tx.transaction_id}.webm?Expires={expires}&Signature={signature}"
    )


def _face_info(state: EmulatorState, call: Call, tx: Transaction, now: float) -> dict[str, Any]:
    rng = random.Random(b"face-info:" + tx.transaction_id.encode())
    passed = tx.passed == "Y"
    info: dict[str, Any] = {
        "faceAttack": "Y" if tx.sub_code == "205" else "N",
        "faceAttackScore": round(rng.uniform(0, 10) if passed else rng.uniform(10, 95), 2),
        "faceComparisonScore": round(rng.uniform(90, 99.9) if passed else rng.uniform(20, 85), 2),
        "faceAge": str(rng.randint(20, 70)),
        "faceGender": (tx.id_fields or {}).get("sex") or rng.choice("MF"),
        "guardRiskScore": round(rng.uniform(0, 20), 2),
    }
    info.update(tx.face_extra)
    assert tx.completed_at is not None
    if tx.video_size > 0 and now <= tx.completed_at + state.config.fresh_link_window:
        info["docVideoUrl"] = evidence_link(state, call.host, tx, now)
    return info


def _id_info(tx: Transaction) -> dict[str, Any]:
    failed_ocr = tx.sub_code in ("211", "213")
    spoofed = tx.sub_code == "212"
    info: dict[str, Any] = {
        "ocrIdPassed": "N" if failed_ocr or spoofed else "Y",
        "ocrIdInfo": {} if failed_ocr else dict(tx.id_fields or {}),
        "spoofInfo": {
            "spoofResult": "Y" if spoofed else "N",
            "spoofType": ["SCREEN_REMARK"] if spoofed else [],
        },
    }
    if tx.id_back_fields is not None:
        info["ocrIdBackInfo"] = {} if failed_ocr else dict(tx.id_back_fields)
        info["spoofBackInfo"] = {"spoofResult": "N", "spoofType": []}
    return info


async def run_check_result(call: Call) -> dict[str, Any]:
    tx = call.transaction
    assert tx is not None
    if not tx.completed:
        raise ApiError("ProcessNotCompleted")
    state = call.state
    now = state.clock.now()
    return_image = call.params.get("IsReturnImage") == "Y"
    images = await transaction_images(state, tx) if return_image else None
    result: dict[str, Any] = {"Passed": tx.passed, "SubCode": tx.sub_code}
    if has_face(tx.product_code):
        face = _face_info(state, call, tx, now)
        if images is not None and images.face is not None:
            face["faceImg"] = EvidenceImages.b64(images.face)
        result["ExtFaceInfo"] = _json(face)
    if has_id(tx.product_code):
        id_info = _id_info(tx)
        if images is not None and images.id_front is not None:
            id_info["idImage"] = EvidenceImages.b64(images.id_front)
            if images.id_back is not None:
                id_info["idBackImage"] = EvidenceImages.b64(images.id_back)
        result["ExtIdInfo"] = _json(id_info)
    result["ExtBasicInfo"] = "{}"
    result["ExtRiskInfo"] = "{}"
    result["ExtInfo"] = "{}"
    return result


# --- DocOcrV2 -------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def fetch_image(state: EmulatorState, url: str) -> bytes:
    """Download a picture from a loopback http(s) URL (the emulator reaches nothing else)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not _is_loopback(parts.hostname or ""):
        raise invalid("IdOcrPictureUrl", "The emulator only fetches loopback http(s) URLs.")
    assert state.fetch_client is not None
    try:
        response = await state.fetch_client.get(url)
    except httpx.TimeoutException:
        raise ApiError("DownloadTimeout") from None
    except httpx.HTTPError:
        raise invalid("IdOcrPictureUrl", "The image could not be downloaded.") from None
    if response.status_code != 200:
        raise invalid("IdOcrPictureUrl", "The image could not be downloaded.")
    return response.content


async def _picture(call: Call) -> bytes:
    encoded = call.params.get("IdOcrPictureBase64") or None
    url = call.params.get("IdOcrPictureUrl") or call.params.get("IdOcrPictureFile") or None
    if encoded is not None and url is not None:
        raise ApiError("DataDuplication")
    if url is not None:
        return await fetch_image(call.state, url)
    if encoded is None:
        raise missing("IdOcrPictureBase64")
    try:
        return base64.b64decode(encoded)
    except (binascii.Error, ValueError):
        raise invalid("IdOcrPictureBase64", "It is not Base64.") from None


def _flag(call: Call, name: str, default: str) -> str:
    value = call.params.get(name) or default
    if value not in _FLAGS:
        raise invalid(name, "Use T or F.")
    return value


def ocr_outcome(
    data: bytes, doc_type: str, side: str, embedded: dict[str, Any] | None
) -> tuple[str, dict[str, str]]:
    """``(sub_code, fields)`` for a valid image: embedded sample data, else hash-derived."""
    if embedded is not None and isinstance(embedded.get("fields"), dict):
        sub_code = str(embedded.get("sub_code") or "200")
        same_type = canonical_doc_type(str(embedded.get("doc_type", ""))) == doc_type
        same_side = doc_type != MAINLAND_ID or embedded.get("card_side", FACE_SIDE) == side
        if not (same_type and same_side):
            sub_code = "213"
        fields = {str(k): str(v) for k, v in embedded["fields"].items()}
        return sub_code, fields
    return "200", derive_fields(doc_type, side, hashlib.sha256(data).digest())


async def run_doc_ocr(call: Call) -> dict[str, Any]:
    _merchant_biz_id(call)
    call.require("MerchantUserId")
    doc_type = _doc_type(call.require("DocType"))
    ocr = call.require("Ocr")
    if ocr not in _FLAGS:
        raise invalid("Ocr", "Use T or F.")
    side = call.params.get("CardSide") or FACE_SIDE
    if side not in CARD_SIDES:
        raise invalid("CardSide")
    if doc_type != MAINLAND_ID:
        side = FACE_SIDE
    spoof = _flag(call, "Spoof", "F")
    quality = _flag(call, "IdFaceQuality", "F")
    if (call.params.get("IdThreshold") or "3") not in ("0", "1", "2", "3"):
        raise invalid("IdThreshold")
    data = await _picture(call)
    info = validate_ocr_image(data)
    sub_code, fields = ocr_outcome(data, doc_type, side, info.embedded)
    ext: dict[str, Any] = {"ocrIdInfo": fields if ocr == "T" and sub_code in ("200", "212") else {}}
    if spoof == "T" and side == FACE_SIDE:
        spoofed = sub_code == "212"
        ext["spoofInfo"] = {
            "spoofResult": "Y" if spoofed else "N",
            "spoofType": ["SCREEN_REMARK"] if spoofed else [],
        }
    if quality == "T" and side == FACE_SIDE:
        score = int.from_bytes(hashlib.sha256(data).digest()[:2], "big") / 65535
        ext["idFaceQualityScore"] = round(85 + 14.99 * score, 2)
    return {
        "TransactionId": new_transaction_id(),
        "Passed": "Y" if sub_code == "200" else "N",
        "SubCode": sub_code,
        "ExtIdInfo": _json(ext),
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
