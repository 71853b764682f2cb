"""``CheckResult``: the result of a completed flow, with the fields each page makes conditional.

``ExtFaceInfo`` (seed 001) and ``ExtIdInfo`` (seed 000) hold what the product has; images come
only with ``IsReturnImage=Y`` and only of a phase that completed successfully
(``Transaction.returned_images``); ``faceComparisonScore`` only where the product compares a
face; ``duplicateFace`` with sub code 233; ``faceRegistrationResult`` only when the flow asked
for automatic registration, ``faceRegistrationID`` only when it succeeded; ``spoofInfo`` is
``N`` with no types unless the flow enabled anti-spoofing (``IdSpoof=Y``).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from typing import Any

from worker.emulator.call import Call, to_json
from worker.emulator.errors import ApiError
from worker.emulator.media import EvidenceImages, build_images
from worker.emulator.products import (
    DUPLICATE_FACE,
    LIVENESS_RISK,
    OCR_FAILED,
    SPOOFED,
    product,
)
from worker.emulator.state import EmulatorState
from worker.emulator.transactions import Transaction, has_face

NO_SPOOF: dict[str, Any] = {"spoofResult": "N", "spoofType": []}


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


def default_duplicates(tx: Transaction) -> list[dict[str, Any]]:
    """One similar face already registered, as seed 001's example shows it."""
    digest = hashlib.sha256(b"duplicate:" + tx.transaction_id.encode()).hexdigest()
    return [
        {
            "faceGroupCode": "sg" + digest[:8],
            "faceId": digest[8:40],
            "merchantUserId": "user" + digest[40:46],
            "score": round(90 + int(digest[46:50], 16) / 65535 * 9.9, 2),
        }
    ]


def face_info(state: EmulatorState, host: str, tx: Transaction, now: float) -> dict[str, Any]:
    rng = random.Random(b"face-info:" + tx.transaction_id.encode())
    passed = tx.passed == "Y"
    info: dict[str, Any] = {
        "faceAttack": "Y" if tx.sub_code == LIVENESS_RISK else "N",
        "faceAttackScore": round(rng.uniform(0, 10) if passed else rng.uniform(10, 95), 2),
        "faceAge": str(rng.randint(20, 70)),
        "faceGender": (tx.id_fields or {}).get("sex") or rng.choice("MF"),
        "guardRiskScore": round(rng.uniform(0, 20), 2),
    }
    comparison = round(rng.uniform(90, 99.9) if passed else rng.uniform(20, 85), 2)
    if product(tx.product_code).compares_faces:
        info["faceComparisonScore"] = comparison
    if tx.auto_registration:
        info["faceRegistrationResult"] = "1" if passed else "0"
        if passed:
            info["faceRegistrationID"] = hashlib.sha256(tx.transaction_id.encode()).hexdigest()[:32]
    if tx.sub_code == DUPLICATE_FACE:
        info["duplicateFace"] = tx.duplicate_face or default_duplicates(tx)
    info.update(tx.face_extra)
    assert tx.completed_at is not None
    if tx.video_size > 0 and now <= tx.completed_at + state.config.fresh_link_window:
        info["docVideoUrl"] = evidence_link(state, host, tx, now)
    return info


def id_info(tx: Transaction) -> dict[str, Any]:
    failed_ocr = tx.sub_code in OCR_FAILED
    spoof = NO_SPOOF
    if tx.sub_code == SPOOFED:
        spoof = {"spoofResult": "Y", "spoofType": list(tx.spoof_type)}
    info: dict[str, Any] = {
        "ocrIdPassed": "Y" if tx.ocr_passed else "N",
        "ocrIdInfo": {} if failed_ocr else dict(tx.id_fields or {}),
        "spoofInfo": spoof,
    }
    if tx.id_back_fields is not None:
        info["ocrIdBackInfo"] = {} if failed_ocr else dict(tx.id_back_fields)
        info["spoofBackInfo"] = dict(NO_SPOOF)
    return info


async def run_check_result(call: Call) -> dict[str, Any]:
    tx = call.transaction
    assert tx is not None
    if not tx.completed:
        raise ApiError("ProcessNotCompleted")
    state = call.state
    now = state.clock.now()
    wanted = tx.returned_images() if call.params.get("IsReturnImage") == "Y" else ()
    images = await transaction_images(state, tx) if wanted else None
    result: dict[str, Any] = {"Passed": tx.passed, "SubCode": tx.sub_code}
    if has_face(tx.product_code):
        face = face_info(state, call.host, tx, now)
        if images is not None and "faceImg" in wanted:
            face["faceImg"] = EvidenceImages.b64(images.face)
        result["ExtFaceInfo"] = to_json(face)
    if tx.id_fields is not None:
        ids = id_info(tx)
        if images is not None and "idImage" in wanted:
            ids["idImage"] = EvidenceImages.b64(images.id_front)
            if "idBackImage" in wanted:
                ids["idBackImage"] = EvidenceImages.b64(images.id_back)
        result["ExtIdInfo"] = to_json(ids)
    result["ExtBasicInfo"] = "{}"
    result["ExtRiskInfo"] = "{}"
    result["ExtInfo"] = "{}"
    return result
