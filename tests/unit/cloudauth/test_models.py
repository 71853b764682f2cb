"""Result models: Ext* JSON strings parsed leniently, unknown fields kept, PII never in repr."""

from __future__ import annotations

import json
from typing import Any

import pytest

from worker.cloudauth.doctypes import DOC_TYPES, lookup_doc_type
from worker.cloudauth.models import (
    CheckResultResult,
    DocOcrResult,
    ExtFaceInfo,
    ExtIdInfo,
    InitializeResult,
    OcrIdInfo,
)

NAME = "CHAN, Tai Man"
ID_NUMBER = "A123456(7)"
IMAGE = "/9j/4AAQSkZJRgABAQAAAQ" + "x" * 64
VIDEO = "https://aliyun-cloudauth.oss-aliyuncs.com/abc.webm?Expires=1&Signature=zz"


def body(result: dict[str, Any]) -> dict[str, Any]:
    return {"RequestId": "RID-1", "Code": "Success", "Message": "success", "Result": result}


FULL_ID = {
    "ocrIdInfo": {"name": NAME, "idNumber": ID_NUMBER, "englishName": "TAI MAN", "sex": "M"},
    "ocrIdPassed": "Y",
    "spoofInfo": {"spoofResult": "Y", "spoofType": ["SCREEN_REMARK", "TAMPER"]},
    "spoofBackInfo": {"spoofResult": "N", "spoofType": []},
    "idImage": IMAGE,
    "idBackImage": IMAGE,
    "ocrIdEditInfo": {"name": "Edited Name", "idNumber": "H11111115"},
    "ocrIdBackInfo": {
        "originOfIssue": "Tanghe County PSB",
        "issueDate": "20230102",
        "expireDate": "20330102",
    },
    "idFaceQualityScore": 98.5,
}
FULL_FACE = {
    "faceImg": IMAGE,
    "faceAttack": "N",
    "docVideoUrl": VIDEO,
    "faceAge": "30",
    "faceGender": "M",
    "faceAttackScore": 80,
    "guardRiskScore": "90.5",
    "faceComparisonScore": 95.2,
    "faceRegistrationResult": "1",
    "faceRegistrationID": "f5a9219aefd6",
    "duplicateFace": [
        {
            "faceGroupCode": "sg7uzt",
            "faceId": "f5a921",
            "merchantUserId": "face0005",
            "score": 93.26,
        }
    ],
    "deviceToken": "e0c34a77",
    "facePassed": "Y",
    "authorityComparisonScore": 80.39,
}


def full_check_result() -> CheckResultResult:
    return CheckResultResult.from_body(
        body(
            {
                "Passed": "Y",
                "SubCode": "200",
                "ExtIdInfo": json.dumps(FULL_ID),
                "ExtFaceInfo": json.dumps(FULL_FACE),
                "ExtBasicInfo": '{"k": "v"}',
                "ExtRiskInfo": "{}",
                "ExtInfo": "",
                "EkycResult": "**",
                "ExtSourceInfo": '{"src": 1}',
            }
        )
    )


def test_check_result_parses_every_documented_field() -> None:
    r = full_check_result()
    assert (r.request_id, r.passed, r.sub_code, r.passed_bool) == ("RID-1", "Y", "200", True)
    assert r.ext_id_info is not None
    assert r.ext_id_info.ocr_id_info is not None
    assert r.ext_id_info.ocr_id_info.name == NAME
    assert r.ext_id_info.ocr_id_info.id_number == ID_NUMBER
    assert r.ext_id_info.ocr_id_passed == "Y"
    assert r.ext_id_info.spoof_info is not None
    assert r.ext_id_info.spoof_info.spoof_type == ["SCREEN_REMARK", "TAMPER"]
    assert r.ext_id_info.spoof_back_info is not None
    assert r.ext_id_info.spoof_back_info.spoof_result == "N"
    assert r.ext_id_info.id_image == IMAGE
    assert r.ext_id_info.id_back_image == IMAGE
    assert r.ext_id_info.ocr_id_edit_info is not None
    assert r.ext_id_info.ocr_id_edit_info.id_number == "H11111115"
    assert r.ext_id_info.ocr_id_back_info is not None
    assert r.ext_id_info.ocr_id_back_info.expire_date == "20330102"
    assert r.ext_id_info.id_face_quality_score == 98.5
    f = r.ext_face_info
    assert f is not None
    assert (f.face_img, f.face_attack, f.doc_video_url) == (IMAGE, "N", VIDEO)
    assert (f.face_age, f.face_gender) == ("30", "M")
    assert (f.face_attack_score, f.guard_risk_score, f.face_comparison_score) == (80.0, 90.5, 95.2)
    assert (f.face_registration_result, f.face_registration_id) == ("1", "f5a9219aefd6")
    assert f.duplicate_face is not None
    assert f.duplicate_face[0].score == 93.26
    assert f.duplicate_face[0].merchant_user_id == "face0005"
    assert (f.device_token, f.face_passed, f.authority_comparison_score) == ("e0c34a77", "Y", 80.39)
    assert r.ext_basic_info == {"k": "v"}
    assert r.ext_risk_info is None
    assert r.ext_info is None
    assert r.ekyc_result == "**"
    assert r.ext_source_info == {"src": 1}
    assert r.raw["ExtIdInfo"] == json.dumps(FULL_ID)


def test_ocr_fields_cover_every_doc_type_in_the_seeds() -> None:
    aliases = {f.alias or name for name, f in OcrIdInfo.model_fields.items()}
    for doc in DOC_TYPES.values():
        assert set(doc.ocr_fields) <= aliases, doc.code
    back = {"originOfIssue", "issueDate", "expireDate"}
    assert set(DOC_TYPES["00000001"].back_fields) == back


def test_macao_and_passport_fields_by_wire_name() -> None:
    info = OcrIdInfo.model_validate(
        {"surnameCN": "陈", "givennameCN": "大文", "placeOfBirth": "AS", "passportNo": "E1",
         "countryCode": "CHN", "nationality": "CHN", "ethnicity": "汉"}
    )  # fmt: skip
    assert (info.surname_cn, info.givenname_cn, info.place_of_birth) == ("陈", "大文", "AS")
    assert (info.passport_no, info.country_code, info.ethnicity) == ("E1", "CHN", "汉")
    dumped = info.model_dump(by_alias=True, exclude_none=True)
    assert "surnameCN" in dumped
    assert "givennameCN" in dumped
    # populate by python name works too
    assert OcrIdInfo(surname_cn="x").surname_cn == "x"


@pytest.mark.parametrize(
    "ext",
    [None, "", "   ", "{}", {}, "not json", "[1,2]", "null", '"str"'],
    ids=["none", "empty", "blank", "empty-json", "empty-obj", "garbage", "array", "null", "str"],
)
def test_ext_fields_tolerate_empty_and_malformed(ext: Any) -> None:
    r = CheckResultResult.from_body(body({"Passed": "N", "ExtIdInfo": ext, "ExtFaceInfo": ext}))
    assert r.ext_id_info is None
    assert r.ext_face_info is None
    assert r.passed_bool is False


def test_ext_fields_may_arrive_as_objects_and_nested_strings() -> None:
    nested = {"ocrIdInfo": json.dumps({"name": NAME}), "spoofInfo": '{"spoofResult":"Y"}'}
    r = CheckResultResult.from_body(body({"ExtIdInfo": nested, "ExtFaceInfo": FULL_FACE}))
    assert r.ext_id_info is not None
    assert r.ext_id_info.ocr_id_info is not None
    assert r.ext_id_info.ocr_id_info.name == NAME
    assert r.ext_id_info.spoof_info is not None
    assert r.ext_id_info.spoof_info.spoof_result == "Y"
    assert r.ext_face_info is not None
    assert r.ext_face_info.face_passed == "Y"


def test_lenient_scalars() -> None:
    # capture 17: the SDK passes "Passed": true / "SubCode": 200 through unchanged
    r = CheckResultResult.from_body(body({"Passed": True, "SubCode": 200}))
    assert (r.passed, r.sub_code, r.passed_bool) == ("Y", "200", True)
    face = ExtFaceInfo.model_validate(
        {"faceAttackScore": "n/a", "faceAge": 31, "duplicateFace": '[{"score":"1.5"}]'}
    )
    assert face.face_attack_score is None
    assert face.face_age == "31"
    assert face.duplicate_face is not None
    assert face.duplicate_face[0].score == 1.5
    ext = ExtIdInfo.model_validate({"spoofInfo": {"spoofType": "SCREEN_REMARK"}})
    assert ext.spoof_info is not None
    assert ext.spoof_info.spoof_type == ["SCREEN_REMARK"]
    odd = CheckResultResult.from_body(
        body({"EkycResult": 5, "ExtFaceInfo": {"duplicateFace": [1, {"faceId": "f"}, "x"]}})
    )
    assert odd.ekyc_result == "5"
    assert odd.ext_face_info is not None
    assert [d.face_id for d in odd.ext_face_info.duplicate_face or []] == ["f"]
    assert CheckResultResult.from_body(body({})).passed_bool is None
    assert CheckResultResult.from_body(body({"Passed": "maybe"})).passed_bool is None


def test_missing_or_string_result() -> None:
    assert CheckResultResult.from_body({"RequestId": "R", "Code": "Success"}).raw == {}
    r = CheckResultResult.from_body({"Code": "Success", "Result": '{"Passed":"Y"}'})
    assert r.passed == "Y"


def test_unknown_fields_are_kept_at_every_level() -> None:
    ext = dict(FULL_ID, newTopLevel="t")
    ext["ocrIdInfo"] = dict(FULL_ID["ocrIdInfo"], newOcrField="o")  # type: ignore[call-overload]
    r = CheckResultResult.from_body(body({"ExtIdInfo": json.dumps(ext), "NewResultField": 7}))
    assert r.model_extra == {"NewResultField": 7}
    assert r.ext_id_info is not None
    assert r.ext_id_info.model_extra == {"newTopLevel": "t"}
    assert r.ext_id_info.ocr_id_info is not None
    assert r.ext_id_info.ocr_id_info.model_extra == {"newOcrField": "o"}
    wire = r.wire()
    assert wire["NewResultField"] == 7
    assert wire["ExtIdInfo"]["ocrIdInfo"]["newOcrField"] == "o"


def test_repr_and_redacted_hide_personal_data() -> None:
    r = full_check_result()
    for text in (repr(r), str(r), json.dumps(r.redacted(), ensure_ascii=False)):
        for secret in (NAME, ID_NUMBER, IMAGE, VIDEO, "TAI MAN", "Edited Name", "face0005",
                       "Tanghe", "f5a9219aefd6", "e0c34a77"):  # fmt: skip
            assert secret not in text, secret
        assert "RID-1" in text
        assert "SCREEN_REMARK" in text
    red = r.redacted()
    assert red["Passed"] == "Y"
    assert red["ExtIdInfo"]["ocrIdInfo"]["name"] == "<redacted>"
    assert red["ExtFaceInfo"]["faceComparisonScore"] == 95.2
    assert red["ExtFaceInfo"]["docVideoUrl"] == "<redacted>"
    assert "raw" not in red
    assert "Raw" not in red
    assert r.ext_id_info is not None
    assert NAME not in repr(r.ext_id_info)
    assert NAME not in repr(r.ext_id_info.ocr_id_info)


def test_doc_ocr_and_initialize_results() -> None:
    d = DocOcrResult.from_body(
        body(
            {
                "TransactionId": "hksb7ba1",
                "Passed": "N",
                "SubCode": "212",
                "ExtIdInfo": '{"idFaceQualityScore":"98.0","ocrIdInfo":{"idNumber":"H11111112"}}',
            }
        )
    )
    assert (d.transaction_id, d.passed_bool, d.sub_code) == ("hksb7ba1", False, "212")
    assert d.ext_id_info is not None
    assert d.ext_id_info.id_face_quality_score == 98.0
    assert "H11111112" not in repr(d)
    i = InitializeResult.from_body(
        body(
            {
                "TransactionId": "08573be8",
                "TransactionUrl": "https://flow.example/x?id=abc",
                "Protocol": "hksb7",
                "ClientCfg": "***",
            }
        )
    )
    assert (i.transaction_id, i.transaction_url, i.protocol, i.client_cfg) == (
        "08573be8",
        "https://flow.example/x?id=abc",
        "hksb7",
        "***",
    )
    assert "flow.example" not in repr(i)
    assert "08573be8" in repr(i)


def test_doc_types_table() -> None:
    assert lookup_doc_type("000000011") is lookup_doc_type("00000011")
    assert lookup_doc_type("000000012") is lookup_doc_type("00000012")
    assert lookup_doc_type("000000011").name.startswith("Macao")  # type: ignore[union-attr]
    assert lookup_doc_type("GLB03002") is None
    assert set(DOC_TYPES) == {
        "01000000", "00000006", "00000008", "00000007", "00000009",
        "000000011", "000000012", "00000001",
    }  # fmt: skip
    assert [d.code for d in DOC_TYPES.values() if d.has_card_side] == ["00000001"]
