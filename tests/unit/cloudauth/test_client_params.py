"""Argument validation, parameter placement and the image header reader."""

from __future__ import annotations

import base64
import io
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from worker.cloudauth.errors import RequestValidationError
from worker.cloudauth.images import ImageInfo, ImageInfoError, image_info
from worker.cloudauth.params import (
    MAX_IMAGE_BYTES,
    SCENE_CODE_ACTIONS,
    check_result_call,
    check_scene_code,
    doc_ocr_v2_call,
    initialize_call,
    place,
)


def encode(fmt: str, width: int, height: int, **save: Any) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (120, 10, 200)).save(buf, fmt, **save)
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


JPEG = b64(encode("JPEG", 300, 400))


def ocr(**kw: Any) -> Any:
    args: dict[str, Any] = {
        "merchant_biz_id": "biz1",
        "merchant_user_id": "user-1",
        "doc_type": "00000006",
        "image_base64": JPEG,
    }
    return doc_ocr_v2_call(**{**args, **kw})


def rejects(fn: Any, field: str, python_name: str, **kw: Any) -> RequestValidationError:
    with pytest.raises(RequestValidationError) as info:
        fn(**kw)
    assert info.value.field == field
    assert info.value.python_name == python_name
    assert field in str(info.value)
    return info.value


# --- image_info ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "save"),
    [
        ("JPEG", {}),
        ("JPEG", {"progressive": True}),
        ("JPEG", {"exif": b"Exif\x00\x00" + b"\x00" * 64}),
        ("PNG", {}),
    ],
    ids=["baseline", "progressive", "exif", "png"],
)
def test_image_info_reads_header(fmt: str, save: dict[str, Any]) -> None:
    info = image_info(encode(fmt, 640, 480, **save))
    assert info == ImageInfo(fmt.lower(), 640, 480)


@settings(max_examples=40, deadline=None)
@given(
    width=st.integers(1, 2000),
    height=st.integers(1, 2000),
    fmt=st.sampled_from(["JPEG", "PNG"]),
)
def test_image_info_matches_pillow(width: int, height: int, fmt: str) -> None:
    info = image_info(encode(fmt, width, height))
    assert (info.width, info.height) == (width, height)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_image_info_never_crashes_on_garbage(data: bytes) -> None:
    for blob in (data, b"\xff\xd8\xff" + data, b"\x89PNG\r\n\x1a\n" + data):
        try:
            info = image_info(blob)
        except ImageInfoError:
            continue
        assert info.format in ("jpeg", "png")


@pytest.mark.parametrize(
    "data",
    [b"", b"GIF89a....", b"\xff\xd8\xff\xe0\x00\x10JFIF", b"\x89PNG\r\n\x1a\n\x00\x00"],
    ids=["empty", "gif", "jpeg-no-sof", "png-no-ihdr"],
)
def test_image_info_rejects(data: bytes) -> None:
    with pytest.raises(ImageInfoError):
        image_info(data)


def test_image_info_with_fill_bytes_before_sof() -> None:
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 250, 260, 1) + b"\x01\x11\x00"
    assert image_info(b"\xff\xd8" + b"\xff\xff" + sof) == ImageInfo("jpeg", 260, 250)


# --- DocOcrV2 -----------------------------------------------------------------------------


def test_doc_ocr_placement() -> None:
    call = ocr(spoof=True, id_threshold="3")
    assert call.action == "DocOcrV2"
    assert call.product_code == "ID_OCR_MIN"
    assert not call.repeatable
    assert call.body == (("IdOcrPictureBase64", JPEG),)
    assert [k for k, _ in call.query] == [
        "DocType", "IdThreshold", "MerchantBizId", "MerchantUserId", "Ocr", "ProductCode", "Spoof",
    ]  # fmt: skip


@pytest.mark.parametrize("doc_type", ["000000011", "00000011", "000000012", "00000012"])
def test_doc_type_spellings_are_accepted_and_sent_verbatim(doc_type: str) -> None:
    assert ("DocType", doc_type) in ocr(doc_type=doc_type).query


def test_doc_ocr_rejections() -> None:
    f = doc_ocr_v2_call
    base = {"merchant_user_id": "u", "doc_type": "00000006", "image_base64": JPEG}
    rejects(f, "MerchantBizId", "merchant_biz_id", merchant_biz_id="a" * 33, **base)
    rejects(f, "MerchantBizId", "merchant_biz_id", merchant_biz_id="", **base)
    rejects(f, "MerchantBizId", "merchant_biz_id", merchant_biz_id="ab_c", **base)
    rejects(f, "MerchantBizId", "merchant_biz_id", merchant_biz_id="ab***", **base)
    base = {"merchant_biz_id": "b", "doc_type": "00000006", "image_base64": JPEG}
    rejects(f, "MerchantUserId", "merchant_user_id", merchant_user_id=" ", **base)
    rejects(f, "MerchantUserId", "merchant_user_id", merchant_user_id="x" * 65, **base)
    rejects(f, "MerchantUserId", "merchant_user_id", merchant_user_id="a\nb", **base)
    base = {"merchant_biz_id": "b", "merchant_user_id": "u", "image_base64": JPEG}
    rejects(f, "DocType", "doc_type", doc_type="GLB03002", **base)
    rejects(f, "DocType", "doc_type", doc_type="", **base)
    rejects(ocr, "ProductCode", "product_code", product_code="ID OCR")
    rejects(ocr, "CardSide", "card_side", card_side="OCR_ID_FACE")  # HK ID has one side
    rejects(ocr, "CardSide", "card_side", doc_type="00000001", card_side="BACK")
    rejects(ocr, "IdThreshold", "id_threshold", id_threshold="4")
    rejects(ocr, "IdOcrPictureUrl", "image_url", image_base64=None, image_url="ftp://x/y.jpg")
    rejects(ocr, "IdOcrPictureUrl", "image_url", image_base64=None, image_url="/relative.jpg")
    rejects(ocr, "IdOcrPictureUrl", "image_url", image_base64=None, image_url=" https://x/y")
    both = rejects(
        ocr,
        "IdOcrPictureBase64/IdOcrPictureUrl",
        "image_base64/image_url",
        image_url="https://x/y",
    )
    assert "not both" in both.reason
    rejects(ocr, "IdOcrPictureBase64/IdOcrPictureUrl", "image_base64/image_url", image_base64=None)


@pytest.mark.parametrize("product", ["ID_OCR", "ID_OCR_MAX", "eKYC", "id_ocr_min"])
def test_doc_ocr_takes_only_id_ocr_min(product: str) -> None:
    """Seed 002: ProductCode is ID_OCR_MIN; anything else is refused before a billed call."""
    err = rejects(ocr, "ProductCode", "product_code", product_code=product)
    assert "ID_OCR_MIN" in err.reason
    assert err.action == "DocOcrV2"


@pytest.mark.parametrize("scene", ["1234567890", "a", "scene_1", "A_b_C"])
def test_doc_ocr_scene_code_goes_in_the_query(scene: str) -> None:
    call = ocr(scene_code=scene)
    assert ("SceneCode", scene) in call.query
    assert all(k != "SceneCode" for k, _ in call.body or ())
    assert all(k != "SceneCode" for k, _ in ocr().query)  # optional: absent unless given


@pytest.mark.parametrize("scene", ["", "12345678901", "scene-1", "scène", "a b", "a\n"])
def test_scene_code_shape_is_checked(scene: str) -> None:
    err = rejects(ocr, "SceneCode", "scene_code", scene_code=scene)
    assert scene not in str(err) or scene == ""
    kw: dict[str, Any] = {"product_code": "eKYC", "merchant_biz_id": "b", "merchant_user_id": "u"}
    rejects(initialize_call, "SceneCode", "scene_code", scene_code=scene, **kw)


def test_scene_code_belongs_to_initialize_and_doc_ocr_only() -> None:
    assert {"Initialize", "DocOcrV2"} == SCENE_CODE_ACTIONS
    kw: dict[str, Any] = {"product_code": "eKYC", "merchant_biz_id": "b", "merchant_user_id": "u"}
    assert ("SceneCode", "kyc_1") in initialize_call(scene_code="kyc_1", **kw).query
    # A named argument of Initialize: not also through ``extra``.
    rejects(initialize_call, "SceneCode", "extra", extra={"SceneCode": "x"}, **kw)
    with pytest.raises(RequestValidationError, match="not a CheckResult parameter"):
        check_scene_code("kyc_1", "CheckResult")


def test_card_side_on_mainland_id() -> None:
    call = ocr(doc_type="00000001", card_side="OCR_ID_NATIONAL_EMBLEM")
    assert ("CardSide", "OCR_ID_NATIONAL_EMBLEM") in call.query


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        ("not base64!", "base64"),
        (b64(b"GIF89a" + b"\x00" * 100), "JPEG or PNG"),
        (b64(encode("PNG", 199, 300)), "199x300"),
        (b64(encode("JPEG", 300, 150)), "300x150"),
        (b64(b"\xff\xd8\xff" + b"\x00" * (MAX_IMAGE_BYTES + 1)), "exceeds"),
    ],
    ids=["not-b64", "gif", "narrow", "short", "too-large"],
)
def test_image_content_rejections(image: str, reason: str) -> None:
    err = rejects(ocr, "IdOcrPictureBase64", "image_base64", image_base64=image)
    assert reason in err.reason
    assert image[:20] not in str(err)  # the value never appears


def test_image_size_boundaries_are_inclusive() -> None:
    ocr(image_base64=b64(encode("PNG", 200, 8192)))
    ocr(image_base64=b64(encode("PNG", 8192, 200)))
    rejects(ocr, "IdOcrPictureBase64", "image_base64", image_base64=b64(encode("PNG", 8193, 200)))


# --- CheckResult / Initialize / place -----------------------------------------------------


def test_check_result_placement() -> None:
    call = check_result_call(transaction_id="t1", merchant_biz_id="b1", product_code="eKYC")
    assert call.body is None
    assert call.query == (("MerchantBizId", "b1"), ("TransactionId", "t1"))
    assert call.repeatable
    f = check_result_call
    kw = {"merchant_biz_id": "b1", "product_code": "eKYC"}
    rejects(f, "TransactionId", "transaction_id", transaction_id="", **kw)
    rejects(f, "TransactionId", "transaction_id", transaction_id="a b", **kw)
    rejects(f, "TransactionId", "transaction_id", transaction_id="x" * 65, **kw)
    rejects(f, "TransactionId", "transaction_id", transaction_id="é", **kw)
    rejects(
        f, "ProductCode", "product_code", transaction_id="t", merchant_biz_id="b", product_code=""
    )


def test_initialize_validation() -> None:
    f = initialize_call
    kw: dict[str, Any] = {"product_code": "eKYC", "merchant_biz_id": "b", "merchant_user_id": "u"}
    assert f(**kw).body == ()
    rejects(f, "MetaInfo", "meta_info", meta_info="{not json", **kw)
    rejects(f, "CallbackUrl", "callback_url", callback_url="javascript:alert(1)", **kw)
    rejects(f, "ReturnUrl", "return_url", return_url="www.example.com", **kw)
    rejects(f, "CallbackToken", "callback_token", callback_token="a b", **kw)
    rejects(f, "DocType", "doc_type", doc_type="0000-0001", **kw)
    rejects(f, "NotAField", "extra", extra={"NotAField": "x"}, **kw)
    rejects(f, "ProductCode", "extra", extra={"ProductCode": "x"}, **kw)
    # eKYC_PRO's alphanumeric DocType family is allowed for Initialize
    assert ("DocType", "GLB03002") in f(doc_type="GLB03002", **kw).query


def test_place_rejects_unknown_action() -> None:
    with pytest.raises(ValueError, match="unknown action"):
        place("DeleteEverything", {}, product_code="x")
