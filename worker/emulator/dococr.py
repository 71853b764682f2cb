"""``DocOcrV2`` (seed 002): OCR and anti-spoofing of one ID document picture, billed per call.

- ``ocrIdInfo``: the fields of the document type on the side read (empty when OCR is off or
  failed: 211, 213);
- ``spoofInfo``: always present; ``spoofResult`` ``N`` with no types unless ``Spoof=T`` on the
  portrait side; 212 (with the types the picture shows, SHORTCUT among them) only then;
- ``idFaceQualityScore`` with ``IdFaceQuality=T`` on the portrait side;
- ``IdThreshold``: the picture's quality (0..100) must reach 60 in standard mode (0), 80 in
  strict mode (1), 40 in loose mode (2), else 211; mode 3 (default) disables the check, and
  only an unreadable picture (quality under 20) gives 211.

Pictures written by ``emulator samples`` carry their fields, sub code, spoof types and quality;
any other picture reads as a valid document derived from its SHA-256 (quality 85..100).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from worker.emulator.call import Call, check_merchant_biz_id, doc_type_param, to_json
from worker.emulator.doctypes import (
    CARD_SIDES,
    FACE_SIDE,
    MAINLAND_ID,
    canonical_doc_type,
    derive_fields,
)
from worker.emulator.errors import ApiError, invalid, missing
from worker.emulator.imagecheck import validate_ocr_image
from worker.emulator.products import DOC_OCR_SPOOF_TYPES, OCR_FAILED, SPOOFED, SUCCESS
from worker.emulator.state import EmulatorState
from worker.emulator.transactions import new_transaction_id

_FLAGS = ("T", "F")
# Quality a picture must reach per IdThreshold mode; "3" disables the check.
THRESHOLDS: dict[str, float | None] = {"0": 60.0, "1": 80.0, "2": 40.0, "3": None}
UNREADABLE = 20.0
DEFAULT_QUALITY = 95.0


@dataclass(frozen=True)
class Reading:
    """What the picture shows: its sub code with every check on, fields, spoofing, quality."""

    sub_code: str
    fields: dict[str, str]
    spoof_type: list[str] = field(default_factory=list)
    quality: float = DEFAULT_QUALITY


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


def _spoof_types(embedded: dict[str, Any]) -> list[str]:
    raw = embedded.get("spoof_type")
    if isinstance(raw, list):
        known = [str(t) for t in raw if t in DOC_OCR_SPOOF_TYPES]
        if known:
            return known
    return [DOC_OCR_SPOOF_TYPES[0]]


def read_picture(data: bytes, doc_type: str, side: str, embedded: dict[str, Any] | None) -> Reading:
    """What a valid picture shows: embedded sample data, else derived from its hash."""
    if embedded is not None and isinstance(embedded.get("fields"), dict):
        sub_code = str(embedded.get("sub_code") or SUCCESS)
        same_type = canonical_doc_type(str(embedded.get("doc_type", ""))) == doc_type
        same_side = doc_type != MAINLAND_ID or embedded.get("card_side", FACE_SIDE) == side
        if not (same_type and same_side):
            sub_code = "213"
        fields = {str(k): str(v) for k, v in embedded["fields"].items()}
        quality = embedded.get("quality")
        return Reading(
            sub_code,
            fields,
            _spoof_types(embedded) if sub_code == SPOOFED else [],
            float(quality) if isinstance(quality, int | float) else DEFAULT_QUALITY,
        )
    digest = hashlib.sha256(data).digest()
    quality = 85 + 15 * int.from_bytes(digest[-2:], "big") / 65536
    return Reading(SUCCESS, derive_fields(doc_type, side, digest), quality=round(quality, 2))


def ocr_outcome(reading: Reading, *, spoof_check: bool, threshold: str) -> str:
    """The sub code answered for ``reading`` under the call's checks."""
    sub_code = reading.sub_code
    if sub_code in OCR_FAILED:
        return sub_code
    floor = THRESHOLDS[threshold]
    if reading.quality < (UNREADABLE if floor is None else floor):
        return "211"
    if sub_code == SPOOFED and not spoof_check:
        return SUCCESS
    return sub_code


async def run_doc_ocr(call: Call) -> dict[str, Any]:
    check_merchant_biz_id(call)
    call.require("MerchantUserId")
    doc_type = doc_type_param(call.require("DocType"))
    ocr = call.require("Ocr")
    if ocr not in _FLAGS:
        raise invalid("Ocr", "Use T or F.")
    side = call.params.get("CardSide") or FACE_SIDE
    if side not in CARD_SIDES:
        raise invalid("CardSide")
    if doc_type != MAINLAND_ID:
        side = FACE_SIDE
    spoof = _flag(call, "Spoof", "F") == "T" and side == FACE_SIDE
    quality = _flag(call, "IdFaceQuality", "F") == "T" and side == FACE_SIDE
    threshold = call.params.get("IdThreshold") or "3"
    if threshold not in THRESHOLDS:
        raise invalid("IdThreshold")
    data = await _picture(call)
    info = validate_ocr_image(data)
    reading = read_picture(data, doc_type, side, info.embedded)
    sub_code = ocr_outcome(reading, spoof_check=spoof, threshold=threshold)
    spoofed = sub_code == SPOOFED
    ext: dict[str, Any] = {
        "ocrIdInfo": reading.fields if ocr == "T" and sub_code not in OCR_FAILED else {},
        "spoofInfo": {
            "spoofResult": "Y" if spoofed else "N",
            "spoofType": reading.spoof_type if spoofed else [],
        },
    }
    if quality:
        score = int.from_bytes(hashlib.sha256(data).digest()[:2], "big") / 65535
        ext["idFaceQualityScore"] = round(85 + 14.99 * score, 2)
    return {
        "TransactionId": new_transaction_id(),
        "Passed": "Y" if sub_code == SUCCESS else "N",
        "SubCode": sub_code,
        "ExtIdInfo": to_json(ext),
    }
