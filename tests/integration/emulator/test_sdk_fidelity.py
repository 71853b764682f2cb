"""The official SDK (alibabacloud-cloudauth-intl20220809) talks to the emulator unchanged."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from alibabacloud_cloudauth_intl20220809 import models
from alibabacloud_cloudauth_intl20220809.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_tea_openapi.models import Config

from tests.fixtures.emulator import EmulatorHandle, LoopbackHTTPServer
from worker.emulator.samples import SampleRow, generate_samples


def sdk(emulator: EmulatorHandle, secret: str | None = None, **options: str) -> Client:
    return Client(
        Config(
            access_key_id=emulator.access_key_id,
            access_key_secret=secret or emulator.access_key_secret,
            endpoint=emulator.host_port,
            protocol="http",
            **options,
        )
    )


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleRow:
    rows = generate_samples(tmp_path_factory.mktemp("sdk-samples"), 1, doc_type="00000006")
    return rows[0]


def initialize_request(**overrides: object) -> models.InitializeRequest:
    values: dict[str, object] = {
        "product_code": "eKYC",
        "merchant_biz_id": "e0c34a77f5ac40a5aa5e6ed20c35",
        "merchant_user_id": "user 123+abc",
        "meta_info": json.dumps({"zimVer": "3.0.0", "deviceType": "web"}),
        "doc_type": "00000006",
        "doc_page_config": ["01", "02"],
        "callback_url": "https://www.example.com/callback?a=1",
        "callback_token": "7ab6f2d1-token",
        "face_picture_base_64": base64.b64encode(b"\xff\xd8\xff fake").decode(),
    }
    values.update(overrides)
    return models.InitializeRequest(**values)


@pytest.mark.parametrize("algorithm", [None, "v2"])
def test_initialize_and_check_result(emulator: EmulatorHandle, algorithm: str | None) -> None:
    client = sdk(emulator, **({"signature_algorithm": algorithm} if algorithm else {}))
    init = client.initialize(initialize_request())
    assert init.status_code == 200
    assert init.body.code == "Success"
    tid = init.body.result.transaction_id
    assert init.body.result.transaction_url
    assert init.body.result.protocol
    assert init.body.result.client_cfg

    request = models.CheckResultRequest(
        transaction_id=tid, merchant_biz_id="e0c34a77f5ac40a5aa5e6ed20c35"
    )
    with pytest.raises(ClientException) as not_done:
        client.check_result(request)
    assert (not_done.value.code, not_done.value.status_code) == ("ProcessNotCompleted", 404)

    done = emulator.complete(tid, video_size=2048)
    request.is_return_image = "Y"
    result = client.check_result(request)
    assert result.headers["x-acs-request-id"] == result.body.request_id
    assert (result.body.result.passed, result.body.result.sub_code) == ("Y", "200")
    face = json.loads(result.body.result.ext_face_info)
    ids = json.loads(result.body.result.ext_id_info)
    assert face["docVideoUrl"].startswith(f"http://{emulator.host_port}/evidence/{tid}.webm")
    assert len(base64.b64decode(face["faceImg"])) > 1000
    assert set(ids["ocrIdInfo"]) >= {"name", "idNumber", "birthDate", "sex"}
    assert done["images"]["idImage"]
    assert json.loads(result.body.result.ext_basic_info) == {}


@pytest.mark.parametrize("algorithm", [None, "v2"])
def test_doc_ocr_v2(emulator: EmulatorHandle, sample: SampleRow, algorithm: str | None) -> None:
    client = sdk(emulator, **({"signature_algorithm": algorithm} if algorithm else {}))
    response = client.doc_ocr_v2(
        models.DocOcrV2Request(
            product_code="ID_OCR_MIN",
            merchant_biz_id="b1",
            merchant_user_id="u 1+2",
            doc_type=sample.doc_type,
            ocr="T",
            spoof="T",
            id_face_quality="T",
            id_threshold="0",
            card_side="OCR_ID_FACE",
            id_ocr_picture_base_64=base64.b64encode(Path(sample.image).read_bytes()).decode(),
        )
    )
    result = response.body.result
    assert (response.body.code, result.passed, result.sub_code) == ("Success", "Y", "200")
    ext = json.loads(result.ext_id_info)
    assert ext["ocrIdInfo"] == sample.fields
    assert ext["spoofInfo"]["spoofResult"] == "N"
    assert "idFaceQualityScore" in ext
    assert len(result.transaction_id) == 32


def test_doc_ocr_v2_by_url(
    emulator: EmulatorHandle, sample: SampleRow, loopback_http: LoopbackHTTPServer
) -> None:
    loopback_http.files["/doc.jpg"] = Path(sample.image).read_bytes()
    response = sdk(emulator).doc_ocr_v2(
        models.DocOcrV2Request(
            product_code="ID_OCR_MIN",
            merchant_biz_id="b1",
            merchant_user_id="u1",
            doc_type=sample.doc_type,
            ocr="T",
            id_ocr_picture_url=loopback_http.url("/doc.jpg"),
        )
    )
    assert json.loads(response.body.result.ext_id_info)["ocrIdInfo"] == sample.fields


def test_wrong_secret_is_rejected(emulator: EmulatorHandle) -> None:
    for options in ({}, {"signature_algorithm": "v2"}):
        with pytest.raises(ClientException) as error:
            sdk(emulator, secret="not-the-secret", **options).initialize(initialize_request())
        assert (error.value.code, error.value.status_code) == ("SignatureDoesNotMatch", 400)
        assert error.value.request_id


def test_throttled_calls_get_throttling_api(emulator: EmulatorHandle) -> None:
    emulator.set_quotas(eKYC=1)
    client = sdk(emulator)
    assert client.initialize(initialize_request()).body.code == "Success"
    with pytest.raises(ClientException) as error:
        client.initialize(initialize_request())
    assert (error.value.code, error.value.status_code) == ("Throttling.Api", 403)
    assert error.value.data["Message"] == "Request was denied due to api flow control."
    assert emulator.stats()["actions"]["Initialize"]["eKYC"]["throttled"] == 1


def test_sts_credentials_and_unknown_transactions(emulator: EmulatorHandle) -> None:
    client = sdk(emulator, security_token="sts-token")
    with pytest.raises(ClientException) as error:
        client.check_result(
            models.CheckResultRequest(transaction_id="hk" + "0" * 30, merchant_biz_id="b1")
        )
    assert (error.value.code, error.value.status_code) == ("TransactionIdInvalid", 400)
