"""Argument validation of each operation.

Each ``*_call`` function checks its arguments and returns an ``ApiCall`` ready to be signed and
sent, its parameters placed by ``worker.cloudauth.placement``; a bad argument raises
``RequestValidationError`` naming the wire and Python field, so no request (and no billed call)
is ever made with it. Values are never echoed in messages.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from worker.cloudauth.doctypes import (
    MAINLAND_ID,
    DocType,
    known_doc_type_codes,
    lookup_doc_type,
)
from worker.cloudauth.errors import RequestValidationError
from worker.cloudauth.images import ImageInfoError, image_info
from worker.cloudauth.placement import (
    BODY_PARAMS,
    CHECK_RESULT,
    DOC_OCR_PRODUCT,
    DOC_OCR_V2,
    INITIALIZE,
    INITIALIZE_FIELDS,
    SCENE_CODE_ACTIONS,
    ApiCall,
    place,
)
from worker.keys import InvalidKeyError, parse_transaction_id

# The names of ``placement`` stay importable from here, where they began.
__all__ = [
    "BODY_PARAMS",
    "CARD_SIDES",
    "CHECK_RESULT",
    "DOC_OCR_PRODUCT",
    "DOC_OCR_V2",
    "ID_THRESHOLDS",
    "INITIALIZE",
    "INITIALIZE_FIELDS",
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_SIDE",
    "MAX_MERCHANT_USER_ID",
    "MAX_URL",
    "MIN_IMAGE_SIDE",
    "SCENE_CODE_ACTIONS",
    "ApiCall",
    "check_image_base64",
    "check_merchant_biz_id",
    "check_merchant_user_id",
    "check_product_code",
    "check_result_call",
    "check_scene_code",
    "check_transaction_id",
    "check_url",
    "doc_ocr_v2_call",
    "initialize_call",
    "place",
]

MAX_IMAGE_BYTES = 1024 * 1024  # seed 002: "The maximum size is 1 MB"
MIN_IMAGE_SIDE = 200
MAX_IMAGE_SIDE = 8192
MAX_MERCHANT_USER_ID = 64  # not published; a SHA-256 hex digest (the advised form) fits
MAX_URL = 2048
CARD_SIDES = frozenset({"OCR_ID_FACE", "OCR_ID_NATIONAL_EMBLEM"})
ID_THRESHOLDS = frozenset({"0", "1", "2", "3"})

_MERCHANT_BIZ_ID_RE = re.compile(r"[A-Za-z0-9]{1,32}")
_PRODUCT_CODE_RE = re.compile(r"[A-Za-z0-9_]{1,32}")
_SCENE_CODE_RE = re.compile(r"[A-Za-z0-9_]{1,10}")  # seed 002: <= 10 letters, digits, _
_VISIBLE_ASCII_RE = re.compile(r"[\x21-\x7e]+")
_INITIALIZE_DOC_TYPE_RE = re.compile(r"[A-Za-z0-9]{1,16}")


# --- field checks -------------------------------------------------------------------------


def _fail(action: str, field: str, python_name: str, reason: str) -> RequestValidationError:
    return RequestValidationError(field, reason, python_name=python_name, action=action)


def check_merchant_biz_id(value: str, action: str) -> str:
    if not isinstance(value, str) or not _MERCHANT_BIZ_ID_RE.fullmatch(value):
        raise _fail(action, "MerchantBizId", "merchant_biz_id", "must be 1-32 letters or digits")
    return value


def check_merchant_user_id(value: str, action: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(action, "MerchantUserId", "merchant_user_id", "must not be empty")
    if len(value) > MAX_MERCHANT_USER_ID or not value.isprintable():
        raise _fail(
            action,
            "MerchantUserId",
            "merchant_user_id",
            f"must be at most {MAX_MERCHANT_USER_ID} printable characters",
        )
    return value


def check_product_code(value: str, action: str) -> str:
    if not isinstance(value, str) or not _PRODUCT_CODE_RE.fullmatch(value):
        raise _fail(
            action, "ProductCode", "product_code", "must be 1-32 letters, digits or underscores"
        )
    return value


def check_scene_code(value: str, action: str) -> str:
    """A ``SceneCode`` for an operation that takes one: 1-10 letters, digits or underscores."""
    if action not in SCENE_CODE_ACTIONS:
        raise _fail(
            action,
            "SceneCode",
            "scene_code",
            f"is not a {action} parameter (only {', '.join(sorted(SCENE_CODE_ACTIONS))})",
        )
    if not isinstance(value, str) or not _SCENE_CODE_RE.fullmatch(value):
        raise _fail(
            action, "SceneCode", "scene_code", "must be 1-10 letters, digits or underscores"
        )
    return value


def _check_doc_ocr_product(value: str) -> str:
    """DocOcrV2 is billed under one product plan; refuse any other before the call."""
    check_product_code(value, DOC_OCR_V2)
    if value != DOC_OCR_PRODUCT:
        raise _fail(
            DOC_OCR_V2,
            "ProductCode",
            "product_code",
            f"must be {DOC_OCR_PRODUCT} for DocOcrV2 (the provider's DocOcrV2 page)",
        )
    return value


def check_transaction_id(value: str, action: str) -> str:
    try:
        return parse_transaction_id(value, "TransactionId")
    except InvalidKeyError as exc:
        raise _fail(action, "TransactionId", "transaction_id", exc.reason) from None


def check_url(value: str, action: str, field: str, python_name: str) -> str:
    reason = f"must be an absolute http(s) URL of at most {MAX_URL} printable characters"
    if (
        not isinstance(value, str)
        or len(value) > MAX_URL
        or value != value.strip()
        or not value.isprintable()
    ):
        raise _fail(action, field, python_name, reason)
    try:
        parts = urlsplit(value)
    except ValueError:
        raise _fail(action, field, python_name, reason) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _fail(action, field, python_name, reason)
    return value


def check_image_base64(value: str, action: str) -> None:
    """Base64 that decodes to a JPEG/PNG of at most 1 MB with sides of 200-8192 px."""
    field, name = "IdOcrPictureBase64", "image_base64"
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _fail(action, field, name, "is not valid base64") from None
    if len(data) > MAX_IMAGE_BYTES:
        raise _fail(action, field, name, f"decoded image exceeds {MAX_IMAGE_BYTES} bytes")
    try:
        info = image_info(data)
    except ImageInfoError as exc:
        raise _fail(action, field, name, f"must be a JPEG or PNG image ({exc})") from None
    for side in (info.width, info.height):
        if not MIN_IMAGE_SIDE <= side <= MAX_IMAGE_SIDE:
            raise _fail(
                action,
                field,
                name,
                f"image is {info.width}x{info.height} px; each side must be "
                f"{MIN_IMAGE_SIDE}-{MAX_IMAGE_SIDE} px",
            )


def _flag(value: bool) -> str:
    return "T" if value else "F"


# --- operations ---------------------------------------------------------------------------


def check_result_call(
    *, transaction_id: str, merchant_biz_id: str, product_code: str, is_return_image: bool = False
) -> ApiCall:
    """CheckResult: all parameters in the query, no body; ``product_code`` only picks the bucket."""
    action = CHECK_RESULT
    params: dict[str, str | None] = {
        "TransactionId": check_transaction_id(transaction_id, action),
        "MerchantBizId": check_merchant_biz_id(merchant_biz_id, action),
        # N is the provider's default; omit it as the SDK does when unset.
        "IsReturnImage": "Y" if is_return_image else None,
    }
    return place(action, params, product_code=check_product_code(product_code, action))


def doc_ocr_v2_call(
    *,
    merchant_biz_id: str,
    merchant_user_id: str,
    doc_type: str,
    image_base64: str | None = None,
    image_url: str | None = None,
    card_side: str | None = None,
    spoof: bool = False,
    face_quality: bool = False,
    id_threshold: str | None = None,
    ocr: bool = True,
    product_code: str = DOC_OCR_PRODUCT,
    scene_code: str | None = None,
) -> ApiCall:
    """DocOcrV2: image as Base64 in the body or as a URL in the query (exactly one of them).

    ``product_code`` must be ``ID_OCR_MIN``; ``scene_code`` labels the call in the console.
    """
    action = DOC_OCR_V2
    _check_doc_ocr_product(product_code)
    check_merchant_biz_id(merchant_biz_id, action)
    check_merchant_user_id(merchant_user_id, action)
    if scene_code is not None:
        check_scene_code(scene_code, action)
    doc = lookup_doc_type(doc_type) if isinstance(doc_type, str) else None
    if doc is None:
        raise _fail(
            action, "DocType", "doc_type", f"unknown; expected one of {known_doc_type_codes()}"
        )
    _check_ocr_image(action, image_base64, image_url)
    if card_side is not None:
        _check_card_side(action, card_side, doc)
    if id_threshold is not None and id_threshold not in ID_THRESHOLDS:
        raise _fail(action, "IdThreshold", "id_threshold", "must be one of 0, 1, 2, 3")
    params: dict[str, str | None] = {
        "CardSide": card_side,
        "DocType": doc_type,
        # F is the provider's default for both flags: send only when enabled.
        "IdFaceQuality": "T" if face_quality else None,
        "IdOcrPictureBase64": image_base64,
        "IdOcrPictureUrl": image_url,
        "IdThreshold": id_threshold,
        "MerchantBizId": merchant_biz_id,
        "MerchantUserId": merchant_user_id,
        "Ocr": _flag(ocr),
        "ProductCode": product_code,
        "SceneCode": scene_code,
        "Spoof": "T" if spoof else None,
    }
    # Billed per call: never repeat an attempt whose outcome is unknown.
    return place(action, params, product_code=product_code, repeatable=False)


def _check_ocr_image(action: str, image_base64: str | None, image_url: str | None) -> None:
    """Exactly one of the Base64 image and its URL, and that one valid."""
    if image_base64 is not None and image_url is not None:
        raise _fail(
            action,
            "IdOcrPictureBase64/IdOcrPictureUrl",
            "image_base64/image_url",
            "give either the Base64 image or its URL, not both",
        )
    if image_base64 is None and image_url is None:
        raise _fail(
            action,
            "IdOcrPictureBase64/IdOcrPictureUrl",
            "image_base64/image_url",
            "an image is required (Base64 or URL)",
        )
    if image_base64 is not None:
        check_image_base64(image_base64, action)
    if image_url is not None:
        check_url(image_url, action, "IdOcrPictureUrl", "image_url")


def _check_card_side(action: str, card_side: str, doc: DocType) -> None:
    """A known card side, given only for the mainland identity card."""
    if card_side not in CARD_SIDES:
        raise _fail(action, "CardSide", "card_side", f"must be one of {sorted(CARD_SIDES)}")
    if doc.code != MAINLAND_ID:
        raise _fail(
            action,
            "CardSide",
            "card_side",
            f"applies only to the mainland resident identity card ({MAINLAND_ID})",
        )


def initialize_call(
    *,
    product_code: str,
    merchant_biz_id: str,
    merchant_user_id: str,
    meta_info: str | None = None,
    doc_type: str | None = None,
    callback_url: str | None = None,
    callback_token: str | None = None,
    return_url: str | None = None,
    scene_code: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> ApiCall:
    """Initialize: all in the query but ``FacePictureBase64`` (body; empty body still sent).

    ``extra`` carries any other InitializeRequest field by its wire name (``LanguageConfig``,
    ``DocPageConfig`` as a JSON array string, ``FacePictureBase64``...). A repeated Initialize only
    leaves an unused transaction behind, so the call counts as repeatable.
    """
    action = INITIALIZE
    params: dict[str, str | None] = {
        "ProductCode": check_product_code(product_code, action),
        "MerchantBizId": check_merchant_biz_id(merchant_biz_id, action),
        "MerchantUserId": check_merchant_user_id(merchant_user_id, action),
        "MetaInfo": meta_info,
        "DocType": doc_type,
        "CallbackUrl": callback_url,
        "CallbackToken": callback_token,
        "ReturnUrl": return_url,
        "SceneCode": scene_code,
    }
    if scene_code is not None:
        check_scene_code(scene_code, action)
    _check_initialize_options(
        meta_info=meta_info,
        doc_type=doc_type,
        callback_url=callback_url,
        return_url=return_url,
        callback_token=callback_token,
    )
    _add_extra(params, extra)
    return place(action, params, product_code=product_code)


def _check_initialize_options(
    *,
    meta_info: str | None,
    doc_type: str | None,
    callback_url: str | None,
    return_url: str | None,
    callback_token: str | None,
) -> None:
    """The optional named fields of Initialize."""
    action = INITIALIZE
    if meta_info is not None:
        try:
            parsed = json.loads(meta_info)
        except (TypeError, ValueError):
            parsed = None
        if not isinstance(parsed, dict):
            raise _fail(action, "MetaInfo", "meta_info", "must be a JSON object string")
    # eKYC_PRO / ID_OCR_MAX use the alphanumeric family (GLB03002...): check the shape only.
    if doc_type is not None and (
        not isinstance(doc_type, str) or not _INITIALIZE_DOC_TYPE_RE.fullmatch(doc_type)
    ):
        raise _fail(action, "DocType", "doc_type", "must be 1-16 letters or digits")
    if callback_url is not None:
        check_url(callback_url, action, "CallbackUrl", "callback_url")
    if return_url is not None:
        check_url(return_url, action, "ReturnUrl", "return_url")
    if callback_token is not None and (
        len(callback_token) > 128 or not _VISIBLE_ASCII_RE.fullmatch(callback_token)
    ):
        raise _fail(
            action,
            "CallbackToken",
            "callback_token",
            "must be 1-128 visible ASCII characters without spaces",
        )


def _add_extra(params: dict[str, str | None], extra: Mapping[str, str] | None) -> None:
    """Put the ``extra`` Initialize fields into ``params``, each a known, unnamed field."""
    action = INITIALIZE
    for key, value in (extra or {}).items():
        if key not in INITIALIZE_FIELDS:
            raise _fail(action, key, "extra", "is not an Initialize request field")
        if key in params:
            raise _fail(action, key, "extra", "is a named argument; pass it as such")
        if not isinstance(value, str):
            raise _fail(action, key, "extra", "value must be a string")
        params[key] = value
