"""The provider surface of the emulator over real HTTP: shapes, auth, operations, quotas."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.emulator import EmulatorHandle, LoopbackHTTPServer
from worker.emulator.samples import SampleRow, generate_samples

ERROR_KEYS = {"RequestId", "HostId", "Code", "Message", "Recommend"}


def body_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"] == "application/json;charset=utf-8"
    payload: dict[str, Any] = response.json()
    assert response.headers["x-acs-request-id"] == payload["RequestId"]
    return payload


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    payload = body_of(response)
    assert (response.status_code, payload["Code"]) == (status, code), payload
    assert set(payload) == ERROR_KEYS
    assert f"q={code}" in payload["Recommend"]
    return payload


def initialize(emulator: EmulatorHandle, **params: str) -> httpx.Response:
    query = {"ProductCode": "eKYC", "MerchantBizId": "biz1", "MerchantUserId": "user 1+2"}
    query.update(params)
    return emulator.call_api("Initialize", query, {})


def ocr(emulator: EmulatorHandle, picture: bytes | None = None, **params: str) -> httpx.Response:
    query = {
        "ProductCode": "ID_OCR_MIN",
        "MerchantBizId": "biz1",
        "MerchantUserId": "u1",
        "DocType": "00000006",
        "Ocr": "T",
    }
    query.update(params)
    body = {"IdOcrPictureBase64": base64.b64encode(picture).decode()} if picture else {}
    return emulator.call_api("DocOcrV2", query, body)


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> list[SampleRow]:
    return generate_samples(tmp_path_factory.mktemp("samples"), 120, bad=5, seed=11)


def test_initialize_creates_a_transaction(emulator: EmulatorHandle) -> None:
    response = initialize(emulator, CallbackUrl="http://127.0.0.1:9/cb", DocType="00000001")
    assert response.status_code == 200
    payload = body_of(response)
    assert (payload["Code"], payload["Message"]) == ("Success", "success")
    result = payload["Result"]
    assert set(result) == {"TransactionId", "TransactionUrl", "Protocol", "ClientCfg"}
    tid = result["TransactionId"]
    assert len(tid) == 32
    state = emulator.transaction(tid)
    assert (state["product_code"], state["doc_type"], state["completed"]) == (
        "eKYC",
        "00000001",
        False,
    )
    assert state["callback_url_set"] is True


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"ProductCode": ""}, "MissingParameter"),
        ({"ProductCode": "NOPE"}, "InvalidParameter"),
        ({"MerchantBizId": "not-alnum!"}, "InvalidParameter"),
        ({"MerchantBizId": "a" * 33}, "InvalidParameter"),
        ({"MerchantUserId": ""}, "MissingParameter"),
        ({"CallbackUrl": "ftp://x/y"}, "InvalidParameter"),
        ({"DocType": "12345678"}, "InvalidParameter"),
    ],
)
def test_initialize_parameter_errors(
    emulator: EmulatorHandle, params: dict[str, str], code: str
) -> None:
    error_of(initialize(emulator, **params), 400, code)


def test_check_result_lifecycle(emulator: EmulatorHandle) -> None:
    tid = emulator.create_transaction("eKYC", doc_type="00000001")
    query = {"MerchantBizId": "biz1", "TransactionId": tid}
    error_of(emulator.call_api("CheckResult", query), 404, "ProcessNotCompleted")
    done = emulator.complete(tid, video_size=1000, id_info={"name": "Test Person"})
    response = emulator.call_api("CheckResult", query)
    result = body_of(response)["Result"]
    assert (result["Passed"], result["SubCode"]) == ("Y", "200")
    for key in ("ExtFaceInfo", "ExtIdInfo", "ExtBasicInfo", "ExtRiskInfo"):
        assert isinstance(result[key], str)
    face, ids = json.loads(result["ExtFaceInfo"]), json.loads(result["ExtIdInfo"])
    assert "faceImg" not in face
    assert "idImage" not in ids
    assert face["faceAttack"] == "N"
    assert face["docVideoUrl"].startswith(f"{emulator.url}/evidence/{tid}.webm?Expires=")
    assert ids["ocrIdInfo"]["name"] == "Test Person"
    assert set(ids["ocrIdBackInfo"]) == {"originOfIssue", "issueDate", "expireDate"}
    with_images = emulator.call_api("CheckResult", {**query, "IsReturnImage": "Y"})
    result = body_of(with_images)["Result"]
    face, ids = json.loads(result["ExtFaceInfo"]), json.loads(result["ExtIdInfo"])
    decoded = {
        "faceImg": base64.b64decode(face["faceImg"]),
        "idImage": base64.b64decode(ids["idImage"]),
        "idBackImage": base64.b64decode(ids["idBackImage"]),
    }
    assert {k: hashlib.sha256(v).hexdigest() for k, v in decoded.items()} == done["images"]
    assert all(v.startswith(b"\xff\xd8\xff") for v in decoded.values())


def test_products_decide_which_results_exist(emulator: EmulatorHandle) -> None:
    face_only = emulator.create_transaction("FACE_LIVENESS")
    id_only = emulator.create_transaction("ID_OCR")
    assert emulator.complete(face_only)["images"].keys() == {"faceImg"}
    done = emulator.complete(id_only, passed="N", video_size=5000)
    assert done["video_size"] == 0
    result = body_of(
        emulator.call_api("CheckResult", {"MerchantBizId": "b", "TransactionId": id_only})
    )["Result"]
    assert (result["Passed"], result["SubCode"]) == ("N", "211")
    assert "ExtFaceInfo" not in result
    assert json.loads(result["ExtIdInfo"])["ocrIdInfo"] == {}


def test_check_result_errors(emulator: EmulatorHandle) -> None:
    error_of(
        emulator.call_api("CheckResult", {"MerchantBizId": "b", "TransactionId": "hk" + "0" * 30}),
        400,
        "TransactionIdInvalid",
    )
    payload = error_of(
        emulator.call_api("CheckResult", {"MerchantBizId": "b"}), 400, "MissingParameter"
    )
    assert "TransactionId" in payload["Message"]


def test_gateway_errors(emulator: EmulatorHandle) -> None:
    query = {"MerchantBizId": "b", "TransactionId": "t"}
    error_of(
        emulator.call_api("CheckResult", query, access_key_secret="wrong"),
        400,
        "SignatureDoesNotMatch",
    )
    error_of(
        emulator.call_api("CheckResult", query, access_key_id="nobody"),
        404,
        "InvalidAccessKeyId.NotFound",
    )
    error_of(
        emulator.call_api("CheckResult", query, date="2020-01-01T00:00:00Z"),
        400,
        "InvalidTimeStamp.Expired",
    )
    error_of(
        emulator.call_api("CheckResult", query, date="yesterday"), 400, "InvalidTimeStamp.Format"
    )
    error_of(emulator.call_api("NoSuchThing", query), 404, "InvalidAction.NotFound")
    error_of(
        emulator.call_api("CheckResult", query, extra_headers={"x-acs-version": "2019-03-07"}),
        400,
        "InvalidVersion",
    )
    first = emulator.call_api("CheckResult", query, nonce="a" * 32)
    error_of(first, 400, "TransactionIdInvalid")
    error_of(emulator.call_api("CheckResult", query, nonce="a" * 32), 400, "SignatureNonceUsed")
    unsigned = emulator.http.post(f"{emulator.url}/?Action=CheckResult&Version=2022-08-09")
    error_of(unsigned, 400, "MissingParameter")
    assert emulator.stats()["rejected"]["SignatureDoesNotMatch"] == 1


def test_legacy_rpc_signature(emulator: EmulatorHandle) -> None:
    params = {"ProductCode": "eKYC", "MerchantBizId": "b1", "MerchantUserId": "u 1"}
    response = emulator.call_rpc("Initialize", params, {"FacePictureBase64": "AAAA+/=="})
    assert body_of(response)["Code"] == "Success"
    wrong = emulator.call_rpc("Initialize", params, access_key_secret="nope")
    error_of(wrong, 400, "SignatureDoesNotMatch")


def test_doc_ocr_reads_sample_fields(emulator: EmulatorHandle, samples: list[SampleRow]) -> None:
    good = [r for r in samples if r.expect == "ok" and r.card_side is None]
    for row in good[:6]:
        picture = Path(row.image).read_bytes()
        response = ocr(emulator, picture, DocType=row.doc_type)
        result = body_of(response)["Result"]
        assert (result["Passed"], result["SubCode"]) == ("Y", "200")
        ext = json.loads(result["ExtIdInfo"])
        # Anti-spoofing is off unless asked for: spoofInfo says N with no types (seed 002).
        assert ext == {"ocrIdInfo": row.fields, "spoofInfo": {"spoofResult": "N", "spoofType": []}}
        assert len(result["TransactionId"]) == 32
    picture = Path(good[0].image).read_bytes()
    flags = ocr(emulator, picture, DocType=good[0].doc_type, Spoof="T", IdFaceQuality="T")
    ext = json.loads(body_of(flags)["Result"]["ExtIdInfo"])
    assert ext["spoofInfo"] == {"spoofResult": "N", "spoofType": []}
    assert 0 <= ext["idFaceQualityScore"] <= 100
    no_ocr = ocr(emulator, picture, DocType=good[0].doc_type, Ocr="F")
    assert json.loads(body_of(no_ocr)["Result"]["ExtIdInfo"])["ocrIdInfo"] == {}


def test_doc_ocr_sub_codes_and_card_sides(
    emulator: EmulatorHandle, samples: list[SampleRow]
) -> None:
    for code in ("211", "212", "213"):
        row = next(r for r in samples if r.expect == code)
        response = ocr(emulator, Path(row.image).read_bytes(), DocType=row.doc_type, Spoof="T")
        result = body_of(response)["Result"]
        assert (result["Passed"], result["SubCode"]) == ("N", code)
        ext = json.loads(result["ExtIdInfo"])
        assert ext["ocrIdInfo"] == row.fields
        assert ext["spoofInfo"]["spoofResult"] == ("Y" if code == "212" else "N")
    back = next(r for r in samples if r.card_side == "OCR_ID_NATIONAL_EMBLEM" and r.expect == "ok")
    picture = Path(back.image).read_bytes()
    result = body_of(
        ocr(emulator, picture, DocType=back.doc_type, CardSide="OCR_ID_NATIONAL_EMBLEM")
    )["Result"]
    assert json.loads(result["ExtIdInfo"])["ocrIdInfo"] == back.fields
    wrong_side = body_of(ocr(emulator, picture, DocType=back.doc_type))["Result"]
    assert wrong_side["SubCode"] == "213"


def test_doc_ocr_bad_images(emulator: EmulatorHandle, samples: list[SampleRow]) -> None:
    bad = [r for r in samples if r.sub_code is None]
    assert len(bad) == 5
    for row in bad:
        response = ocr(emulator, Path(row.image).read_bytes(), DocType=row.doc_type)
        error_of(response, 401, row.expect)
    stats = emulator.stats()["actions"]["DocOcrV2"]["ID_OCR_MIN"]
    assert (stats["served"], stats["errors"]) == (5, 5)


def test_doc_ocr_parameter_errors(emulator: EmulatorHandle, samples: list[SampleRow]) -> None:
    picture = Path(samples[0].image).read_bytes()
    error_of(ocr(emulator, picture, DocType=""), 400, "MissingParameter")
    error_of(ocr(emulator, picture, DocType="GLB03002"), 400, "InvalidParameter")
    error_of(ocr(emulator, picture, Ocr="yes"), 400, "InvalidParameter")
    error_of(ocr(emulator, picture, ProductCode="ID_OCR"), 400, "InvalidParameter")
    error_of(ocr(emulator, picture, CardSide="BACK"), 400, "InvalidParameter")
    error_of(ocr(emulator, None), 400, "MissingParameter")
    error_of(
        ocr(emulator, picture, IdOcrPictureUrl="http://127.0.0.1:9/x.jpg"), 401, "DataDuplication"
    )
    error_of(
        ocr(emulator, None, IdOcrPictureUrl="http://example.com/x.jpg"), 400, "InvalidParameter"
    )


def test_doc_ocr_fetches_loopback_urls(
    emulator: EmulatorHandle, samples: list[SampleRow], loopback_http: LoopbackHTTPServer
) -> None:
    row = samples[0]
    loopback_http.files["/id.jpg"] = Path(row.image).read_bytes()
    response = ocr(
        emulator, None, DocType=row.doc_type, IdOcrPictureUrl=loopback_http.url("/id.jpg")
    )
    assert json.loads(body_of(response)["Result"]["ExtIdInfo"])["ocrIdInfo"] == row.fields
    # The helper server answers "ok" for unknown paths: downloaded, but not a picture.
    not_a_picture = ocr(emulator, None, IdOcrPictureUrl=loopback_http.url("/none.jpg"))
    error_of(not_a_picture, 401, "UnqualifiedPhoto")
    loopback_http.statuses.append(404)
    gone = ocr(emulator, None, IdOcrPictureUrl=loopback_http.url("/gone.jpg"))
    error_of(gone, 400, "InvalidParameter")


def test_quota_per_api_throttles_with_the_providers_body(
    emulator: EmulatorHandle, samples: list[SampleRow]
) -> None:
    emulator.set_quotas({"ID_OCR_MIN:DocOcrV2": 2})
    picture = Path(samples[0].image).read_bytes()
    codes = [ocr(emulator, picture, DocType=samples[0].doc_type).status_code for _ in range(3)]
    assert codes[:2] == [200, 200]
    throttled = ocr(emulator, picture, DocType=samples[0].doc_type)
    payload = error_of(throttled, 403, "Throttling.Api")
    assert payload["Message"] == "Request was denied due to api flow control."
    stats = emulator.stats()["actions"]["DocOcrV2"]["ID_OCR_MIN"]
    assert stats["served"] == 2
    assert stats["throttled"] == 2
    assert stats["max_in_window"] == 2


def test_check_result_counts_against_the_transactions_product(emulator: EmulatorHandle) -> None:
    emulator.set_quotas(FACE_LIVENESS=1)
    tid = emulator.create_transaction("FACE_LIVENESS")
    query = {"MerchantBizId": "b", "TransactionId": tid}
    error_of(emulator.call_api("CheckResult", query), 404, "ProcessNotCompleted")
    error_of(emulator.call_api("CheckResult", query), 403, "Throttling.Api")
    stats = emulator.stats()["actions"]["CheckResult"]["FACE_LIVENESS"]
    assert stats == {"served": 1, "throttled": 1, "errors": 1, "max_in_window": 1}
    # Initialize of the same product has its own window.
    assert initialize(emulator, ProductCode="FACE_LIVENESS").status_code == 200
