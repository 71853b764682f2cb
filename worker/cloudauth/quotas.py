"""The provider's published QPS quotas per product code (spec §7, DOC-QPS).

Each applies to every API of its product, per account. ``IDV_QUOTAS`` and ``IDV_API_QUOTAS``
override them (``worker.ratelimit.QuotaTable`` joins the two).
"""

from __future__ import annotations

# ID_OCR_MIN is not published: 10 like ID_OCR, and configurable.
DEFAULT_QUOTAS: dict[str, float] = {
    "eKYC": 10,
    "eKYC_NDI": 10,
    "eKYC_PRO": 5,
    "eKYC_MIN": 10,
    "FACE_LIVENESS_PRO": 10,
    "FACE_LIVENESS": 50,
    "FACE_IDU": 50,
    "FACE_IDU_MIN": 10,
    "FACE_VERIFY": 50,
    "FACE_GUARD": 50,
    "FACE_GUARD_PRO": 50,
    "FACE_COMPARE": 10,
    "FACE_CROSS_COMPARE": 10,
    "FACE_DEEPFAKE": 10,
    "ID_OCR": 10,
    "ID_OCR_MIN": 10,
    "ID_NFC": 10,
    "ID_OCR_MAX": 5,
    "ID_2META": 50,
    "eKYC_Date_MIN": 10,
    "MOBILE_2META": 50,
    "MOBILE_3META": 50,
    "BANK_CARD_N_META": 50,
    "CREDENTIAL_DETECT": 10,
    "CREDENTIAL_RECOGNITION": 5,
    "ADD_VERIFY_PRO": 20,
}
