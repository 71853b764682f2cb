"""Each row of the provider's tables (seeds 000, 001, 002) against the emulator over HTTP.

The tables are copied here from the seed pages, not imported from the emulator, so a wrong
entry on one side shows up as a failure.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from tests.fixtures.emulator import EmulatorHandle
from worker.emulator.doctypes import EMBLEM_SIDE, FACE_SIDE, derive_fields
from worker.emulator.imagecheck import embed_payload
from worker.emulator.render import render_card

# --- seed 002 (DocOcrV2 "OCR response fields") and seed 000 (CheckResult, ID_OCR) -----------
HKID = [
    "name",
    "englishName",
    "nameCode",
    "sex",
    "birthDate",
    "idNumber",
    "currentIssueDate",
    "firstIssueDate",
    "isPermanent",
    "symbols",
]
DOC_FIELDS: dict[str, list[str]] = {
    "00000006": HKID,
    "00000008": HKID,
    "00000007": [
        "name",
        "englishName",
        "sex",
        "birthDate",
        "idNumber",
        "issueDate",
        "expiryDate",
        "placeOfIssue",
        "originOfIssue",
    ],
    "00000009": [
        "name",
        "englishName",
        "sex",
        "birthDate",
        "idNumber",
        "issueDate",
        "expiryDate",
        "originOfIssue",
    ],
    "000000012": [
        "name",
        "englishName",
        "sex",
        "birthDate",
        "idNumber",
        "issueDate",
        "expiryDate",
        "originOfIssue",
        "placeOfIssue",
    ],
    "01000000": [
        "surname",
        "givenname",
        "sex",
        "birthDate",
        "passportNo",
        "nationality",
        "expiryDate",
        "countryCode",
    ],
    "000000011": [
        "surnameCN",
        "givennameCN",
        "surname",
        "givenname",
        "sex",
        "birthDate",
        "idNumber",
        "expiryDate",
        "placeOfBirth",
    ],
    "00000001": [
        "name",
        "sex",
        "ethnicity",
        "birthDate",
        "idNumber",
        "address",
        "province",
        "city",
        "originOfIssue",
        "issueDate",
        "expiryDate",
    ],
}
MAINLAND_BACK = ["originOfIssue", "issueDate", "expiryDate"]
# CheckResult names the back-side expiry differently (seed 000, ocrIdBackInfo example).
CHECK_RESULT_BACK = {"originOfIssue", "issueDate", "expireDate"}
CHECK_RESULT_SPOOF_TYPES = ["SCREEN_REMARK", "PHOTO_COPY", "TAMPER"]  # seed 000
DOC_OCR_SPOOF_TYPES = [*CHECK_RESULT_SPOOF_TYPES, "SHORTCUT"]  # seed 002
NO_SPOOF = {"spoofResult": "N", "spoofType": []}

# --- sub codes: seed 001 (face) and seeds 000/002 (ID) ----------------------------------------
FAILURES = ["204", "205", "206", "233", "211", "212", "213"]
# product -> the failures its flow can end with (204 only where faces are compared).
VALID_FAILURES = {
    "ID_OCR": {"211", "212", "213"},
    "FACE_LIVENESS": {"205", "206", "233"},
    "FACE_VERIFY": {"204", "205", "206", "233"},
    "eKYC": set(FAILURES),
}
COMPARES = {"ID_OCR": False, "FACE_LIVENESS": False, "FACE_VERIFY": True, "eKYC": True}


def create(emulator: EmulatorHandle, product: str, **extra: Any) -> str:
    payload = {"product_code": product, "merchant_biz_id": "b1", "merchant_user_id": "u1"}
    response = emulator.http.post(f"{emulator.url}/_emulator/transactions", json=payload | extra)
    assert response.status_code == 201, response.text
    return str(response.json()["transaction_id"])


def complete(emulator: EmulatorHandle, tid: str, **payload: Any) -> httpx.Response:
    return emulator.http.post(
        f"{emulator.url}/_emulator/transactions/{tid}/complete",
        json={"callback": False, "video_size": 1000, **payload},
    )


def check_result(emulator: EmulatorHandle, tid: str, images: bool = True) -> dict[str, Any]:
    query = {"MerchantBizId": "b1", "TransactionId": tid, "IsReturnImage": "Y" if images else "N"}
    response = emulator.call_api("CheckResult", query)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["Result"]
    return result


def parts(result: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    face = json.loads(result["ExtFaceInfo"]) if "ExtFaceInfo" in result else None
    ids = json.loads(result["ExtIdInfo"]) if "ExtIdInfo" in result else None
    return face, ids


CASES = [(p, "Y", "200") for p in VALID_FAILURES] + [
    (p, "N", code) for p in VALID_FAILURES for code in FAILURES
]


@pytest.mark.parametrize(("product", "passed", "sub_code"), CASES)
def test_sub_code_table_and_conditional_fields(
    emulator: EmulatorHandle, product: str, passed: str, sub_code: str
) -> None:
    tid = create(emulator, product, id_spoof=True, doc_type="00000001")
    answer = complete(emulator, tid, passed=passed, sub_code=sub_code)
    valid = passed == "Y" or sub_code in VALID_FAILURES[product]
    if not valid:
        assert answer.status_code == 400
        assert f"sub_code={sub_code}" in answer.json()["error"]
        return
    assert answer.status_code == 200, answer.text
    result = check_result(emulator, tid)
    assert (result["Passed"], result["SubCode"]) == (passed, sub_code)
    face, ids = parts(result)
    returned = set(answer.json()["images"])
    if face is not None:
        assert ("faceImg" in face) == (passed == "Y") == ("faceImg" in returned)
        assert ("faceComparisonScore" in face) == COMPARES[product]
        assert ("duplicateFace" in face) == (sub_code == "233")
        assert face["faceAttack"] == ("Y" if sub_code == "205" else "N")
    if ids is not None:
        ocr_ok = sub_code not in ("211", "212", "213")
        assert ids["ocrIdPassed"] == ("Y" if ocr_ok else "N")
        assert ("idImage" in ids) == ocr_ok == ("idImage" in returned)
        assert ("idBackImage" in ids) == ocr_ok
        assert (ids["ocrIdInfo"] == {}) == (sub_code in ("211", "213"))
        assert (ids["ocrIdBackInfo"] == {}) == (sub_code in ("211", "213"))
        if sub_code == "212":
            assert ids["spoofInfo"]["spoofResult"] == "Y"
            assert set(ids["spoofInfo"]["spoofType"]) <= set(CHECK_RESULT_SPOOF_TYPES)
        else:
            assert ids["spoofInfo"] == NO_SPOOF
    assert (face is not None) == (not product.startswith("ID_"))
    assert (ids is not None) == (not product.startswith("FACE_"))


@pytest.mark.parametrize(
    ("product", "payload", "why"),
    [
        ("ID_OCR", {"passed": "N", "sub_code": "212"}, "IdSpoof"),
        ("FACE_LIVENESS", {"passed": "Y", "sub_code": "205"}, "200"),
        ("ID_OCR", {"passed": "N", "sub_code": "205"}, "211, 212, 213"),
        ("FACE_LIVENESS", {"passed": "N", "sub_code": "204"}, "205, 206, 233"),
        ("ID_OCR", {"passed": "N", "sub_code": "999"}, "211"),
    ],
)
def test_impossible_outcomes_are_refused_with_the_reason(
    emulator: EmulatorHandle, product: str, payload: dict[str, str], why: str
) -> None:
    tid = create(emulator, product)
    answer = complete(emulator, tid, **payload)
    assert answer.status_code == 400
    assert why in answer.json()["error"]
    # Refused means untouched: the flow can still complete.
    assert complete(emulator, tid).status_code == 200


def test_images_need_is_return_image(emulator: EmulatorHandle) -> None:
    tid = create(emulator, "eKYC")
    assert complete(emulator, tid).status_code == 200
    face, ids = parts(check_result(emulator, tid, images=False))
    assert face is not None
    assert ids is not None
    assert "faceImg" not in face
    assert "idImage" not in ids


# --- ExtFaceInfo rows (seed 001) ---------------------------------------------------------------


def face_of(emulator: EmulatorHandle, product: str, **complete_with: Any) -> dict[str, Any]:
    create_with = {k: complete_with.pop(k) for k in ("auto_registration",) if k in complete_with}
    tid = create(emulator, product, **create_with)
    assert complete(emulator, tid, **complete_with).status_code == 200
    face, _ = parts(check_result(emulator, tid))
    assert face is not None
    return face


def test_face_scores_age_and_gender(emulator: EmulatorHandle) -> None:
    face = face_of(emulator, "FACE_LIVENESS")
    for name in ("faceAttackScore", "guardRiskScore"):
        assert isinstance(face[name], float)
        assert 0 <= face[name] <= 100
    assert isinstance(face["faceAge"], str)
    assert face["faceAge"].isdigit()
    assert face["faceGender"] in ("M", "F")
    assert face["docVideoUrl"].startswith(f"{emulator.url}/evidence/")
    assert "deviceToken" not in face  # only with the Device Assistant module


@pytest.mark.parametrize(
    ("passed", "auto_registration", "result", "has_id"),
    [("Y", True, "1", True), ("N", True, "0", False), ("Y", False, None, False)],
)
def test_face_registration_fields(
    emulator: EmulatorHandle, passed: str, auto_registration: bool, result: str | None, has_id: bool
) -> None:
    face = face_of(emulator, "FACE_LIVENESS", passed=passed, auto_registration=auto_registration)
    assert face.get("faceRegistrationResult") == result
    assert ("faceRegistrationID" in face) == has_id


def test_duplicate_face_entries(emulator: EmulatorHandle) -> None:
    face = face_of(emulator, "FACE_LIVENESS", passed="N", sub_code="233")
    [entry] = face["duplicateFace"]
    assert set(entry) == {"faceGroupCode", "faceId", "merchantUserId", "score"}
    assert 0 <= entry["score"] <= 100
    given = [{"faceGroupCode": "g1", "faceId": "f1", "merchantUserId": "m1", "score": 93.26}]
    face = face_of(emulator, "FACE_LIVENESS", passed="N", sub_code="233", duplicate_face=given)
    assert face["duplicateFace"] == given


# --- ExtIdInfo rows (seed 000) -----------------------------------------------------------------


@pytest.mark.parametrize("doc_type", sorted(DOC_FIELDS))
def test_check_result_fields_of_every_document_type(
    emulator: EmulatorHandle, doc_type: str
) -> None:
    tid = create(emulator, "ID_OCR", doc_type=doc_type)
    assert complete(emulator, tid).status_code == 200
    _, ids = parts(check_result(emulator, tid))
    assert ids is not None
    assert list(ids["ocrIdInfo"]) == DOC_FIELDS[doc_type]
    two_sided = doc_type == "00000001"
    assert ("ocrIdBackInfo" in ids) == ("idBackImage" in ids) == two_sided
    if two_sided:
        assert set(ids["ocrIdBackInfo"]) == CHECK_RESULT_BACK
        assert ids["spoofBackInfo"] == NO_SPOOF
        # One card: the portrait side repeats what the emblem side shows.
        back = ids["ocrIdBackInfo"]
        front = ids["ocrIdInfo"]
        assert (front["originOfIssue"], front["issueDate"], front["expiryDate"]) == (
            back["originOfIssue"],
            back["issueDate"],
            back["expireDate"],
        )
        assert (front["province"], front["city"]) == ("", "")  # reserved, empty by default
    assert "ocrIdEditInfo" not in ids  # only with the OCR result edit page


@pytest.mark.parametrize("spoof_type", CHECK_RESULT_SPOOF_TYPES)
def test_check_result_spoof_types(emulator: EmulatorHandle, spoof_type: str) -> None:
    tid = create(emulator, "ID_OCR", id_spoof=True)
    answer = complete(emulator, tid, passed="N", sub_code="212", spoof_type=[spoof_type])
    assert answer.status_code == 200, answer.text
    _, ids = parts(check_result(emulator, tid))
    assert ids is not None
    assert ids["spoofInfo"] == {"spoofResult": "Y", "spoofType": [spoof_type]}
    assert ids["ocrIdInfo"]  # a spoofed document is still read


def test_check_result_refuses_doc_ocr_only_spoof_types(emulator: EmulatorHandle) -> None:
    tid = create(emulator, "ID_OCR", id_spoof=True)
    answer = complete(emulator, tid, passed="N", sub_code="212", spoof_type=["SHORTCUT"])
    assert answer.status_code == 400
    assert "SCREEN_REMARK" in answer.json()["error"]


# --- DocOcrV2 (seed 002) ---------------------------------------------------------------------


def picture(
    doc_type: str = "00000006",
    side: str = FACE_SIDE,
    sub_code: str = "200",
    spoof_type: list[str] | None = None,
    quality: float | None = None,
) -> bytes:
    fields = derive_fields(doc_type, side, b"fidelity")
    embedded = embed_payload(
        doc_type, side, fields, sub_code, spoof_type=spoof_type, quality=quality
    )
    return render_card(doc_type, side, fields, "jpeg", embedded)


def doc_ocr(emulator: EmulatorHandle, data: bytes, **params: str) -> dict[str, Any]:
    query = {
        "ProductCode": "ID_OCR_MIN",
        "MerchantBizId": "b1",
        "MerchantUserId": "u1",
        "DocType": "00000006",
        "Ocr": "T",
        **params,
    }
    response = emulator.call_api(
        "DocOcrV2", query, {"IdOcrPictureBase64": base64.b64encode(data).decode()}
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["Result"]
    result["ext"] = json.loads(result["ExtIdInfo"])
    return result


@pytest.mark.parametrize(
    ("doc_type", "side"), [(d, FACE_SIDE) for d in sorted(DOC_FIELDS)] + [("00000001", EMBLEM_SIDE)]
)
def test_doc_ocr_fields_of_every_document_type_and_side(
    emulator: EmulatorHandle, doc_type: str, side: str
) -> None:
    plain = render_card(doc_type, side, derive_fields(doc_type, side, b"plain"), "png")
    result = doc_ocr(emulator, plain, DocType=doc_type, CardSide=side)
    assert (result["Passed"], result["SubCode"]) == ("Y", "200")
    expected = MAINLAND_BACK if side == EMBLEM_SIDE else DOC_FIELDS[doc_type]
    assert list(result["ext"]["ocrIdInfo"]) == expected


@pytest.mark.parametrize("spoof_type", DOC_OCR_SPOOF_TYPES)
def test_doc_ocr_spoof_types_only_with_anti_spoofing(
    emulator: EmulatorHandle, spoof_type: str
) -> None:
    data = picture(sub_code="212", spoof_type=[spoof_type])
    on = doc_ocr(emulator, data, Spoof="T")
    assert (on["Passed"], on["SubCode"]) == ("N", "212")
    assert on["ext"]["spoofInfo"] == {"spoofResult": "Y", "spoofType": [spoof_type]}
    assert on["ext"]["ocrIdInfo"]
    off = doc_ocr(emulator, data, Spoof="F")
    assert (off["Passed"], off["SubCode"]) == ("Y", "200")
    assert off["ext"]["spoofInfo"] == NO_SPOOF
    default = doc_ocr(emulator, data)
    assert default["SubCode"] == "200"
    assert default["ext"]["spoofInfo"] == NO_SPOOF


def test_face_quality_score_only_when_asked(emulator: EmulatorHandle) -> None:
    data = picture()
    assert "idFaceQualityScore" not in doc_ocr(emulator, data)["ext"]
    score = doc_ocr(emulator, data, IdFaceQuality="T")["ext"]["idFaceQualityScore"]
    assert 0 <= score <= 100


# quality of the picture, IdThreshold mode -> sub code (0 standard, 1 strict, 2 loose, 3 off)
THRESHOLD_TABLE = [
    (95, "0", "200"),
    (95, "1", "200"),
    (70, "0", "200"),
    (70, "1", "211"),
    (70, "2", "200"),
    (70, "3", "200"),
    (50, "0", "211"),
    (50, "1", "211"),
    (50, "2", "200"),
    (50, "3", "200"),
    (30, "2", "211"),
    (30, "3", "200"),
    (10, "3", "211"),
]


@pytest.mark.parametrize(("quality", "mode", "sub_code"), THRESHOLD_TABLE)
def test_id_threshold_modes_on_borderline_pictures(
    emulator: EmulatorHandle, quality: float, mode: str, sub_code: str
) -> None:
    result = doc_ocr(emulator, picture(quality=quality), IdThreshold=mode)
    assert result["SubCode"] == sub_code
    assert result["Passed"] == ("Y" if sub_code == "200" else "N")
    assert (result["ext"]["ocrIdInfo"] == {}) == (sub_code == "211")


def test_threshold_defaults_to_disabled(emulator: EmulatorHandle) -> None:
    assert doc_ocr(emulator, picture(quality=30))["SubCode"] == "200"
