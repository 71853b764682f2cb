"""CloudAuthClient against the provider emulator: real HTTP, real signature checks, quotas,
injected faults."""

from __future__ import annotations

import argparse
import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from PIL import Image

from tests.fixtures.emulator import EmulatorHandle, settings_for
from worker.cloudauth.client import Backoff, CloudAuthClient
from worker.cloudauth.errors import (
    AccountError,
    CredentialsError,
    NotReadyError,
    PermanentError,
    RequestValidationError,
    ThrottledError,
    TransactionInvalidError,
    TransientError,
)
from worker.commands import api
from worker.ratelimit import CallContext


def jpeg(width: int = 640, height: int = 400) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (210, 200, 180)).save(buf, "JPEG", quality=70)
    return buf.getvalue()


@pytest.fixture
def client(emulator: EmulatorHandle) -> Iterator[CloudAuthClient]:
    with CloudAuthClient(settings_for(emulator).provider, backoff=Backoff(base=0.02, cap=0.1)) as c:
        yield c


def stats_of(emulator: EmulatorHandle, action: str, product: str) -> dict[str, int]:
    entry: dict[str, int] = emulator.stats()["actions"][action][product]
    return entry


def test_initialize_then_check_result(emulator: EmulatorHandle, client: CloudAuthClient) -> None:
    init = client.initialize(
        product_code="eKYC",
        merchant_biz_id="biz0001",
        merchant_user_id="user-1",
        doc_type="00000006",
        meta_info='{"deviceType":"web"}',
    )
    assert init.transaction_id
    assert init.transaction_url
    assert init.protocol
    with pytest.raises(NotReadyError) as info:
        client.check_result(
            transaction_id=init.transaction_id, merchant_biz_id="biz0001", product_code="eKYC"
        )
    assert info.value.status == 404
    assert info.value.request_id
    emulator.complete(init.transaction_id, passed="Y")
    result = client.check_result(
        transaction_id=init.transaction_id,
        merchant_biz_id="biz0001",
        product_code="eKYC",
        is_return_image=True,
    )
    assert result.passed_bool is True
    assert result.sub_code == "200"
    assert result.request_id
    assert result.ext_id_info is not None
    assert result.ext_id_info.ocr_id_info is not None
    assert result.ext_id_info.ocr_id_info.id_number
    assert result.ext_id_info.id_image  # IsReturnImage=Y
    face = result.ext_face_info
    assert face is not None
    assert face.doc_video_url
    assert face.doc_video_url.startswith("http")
    assert face.face_img
    assert base64.b64decode(face.face_img)
    assert face.face_comparison_score is not None
    # nothing personal in the repr
    assert result.ext_id_info.ocr_id_info.id_number not in repr(result)
    assert face.doc_video_url not in repr(result)


def test_unknown_transaction_is_invalid(client: CloudAuthClient) -> None:
    with pytest.raises(TransactionInvalidError):
        client.check_result(
            transaction_id="hks00000000000000000000", merchant_biz_id="b1", product_code="eKYC"
        )


def test_doc_ocr_base64(emulator: EmulatorHandle, client: CloudAuthClient) -> None:
    image = base64.b64encode(jpeg()).decode()
    result = client.doc_ocr_v2(
        merchant_biz_id="b1",
        merchant_user_id="u 1+x",
        doc_type="00000006",
        image_base64=image,
        spoof=True,
        face_quality=True,
        scene_code="bulk_2026",  # signed in the query like every non-body parameter
    )
    assert result.passed_bool is True
    assert result.transaction_id
    ext = result.ext_id_info
    assert ext is not None
    assert ext.ocr_id_info is not None
    assert ext.ocr_id_info.name
    assert ext.ocr_id_info.id_number
    assert ext.spoof_info is not None
    assert ext.spoof_info.spoof_result == "N"
    assert ext.id_face_quality_score is not None
    assert stats_of(emulator, "DocOcrV2", "ID_OCR_MIN")["served"] == 1


def test_doc_ocr_mainland_back_side_and_macao_spelling(client: CloudAuthClient) -> None:
    image = base64.b64encode(jpeg()).decode()
    back = client.doc_ocr_v2(
        merchant_biz_id="b1",
        merchant_user_id="u1",
        doc_type="00000001",
        image_base64=image,
        card_side="OCR_ID_NATIONAL_EMBLEM",
    )
    assert back.passed_bool is True
    for spelling in ("000000011", "00000011"):
        macao = client.doc_ocr_v2(
            merchant_biz_id="b1", merchant_user_id="u1", doc_type=spelling, image_base64=image
        )
        assert macao.ext_id_info is not None
        assert macao.ext_id_info.ocr_id_info is not None
        assert macao.ext_id_info.ocr_id_info.surname


class ImageServer(ThreadingHTTPServer):
    def __init__(self, data: bytes) -> None:
        super().__init__(("127.0.0.1", 0), ImageHandler)
        self.data = data


class ImageHandler(BaseHTTPRequestHandler):
    server: ImageServer

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "image/jpeg")
        self.send_header("content-length", str(len(self.server.data)))
        self.end_headers()
        self.wfile.write(self.server.data)

    def log_message(self, format: str, *args: Any) -> None:
        return None


def test_doc_ocr_by_url(client: CloudAuthClient) -> None:
    server = ImageServer(jpeg())
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/ids/a b.jpg?v=1"
        result = client.doc_ocr_v2(
            merchant_biz_id="b1", merchant_user_id="u1", doc_type="01000000", image_url=url
        )
    finally:
        server.shutdown()
        server.server_close()
    assert result.passed_bool is True
    assert result.ext_id_info is not None
    assert result.ext_id_info.ocr_id_info is not None
    assert result.ext_id_info.ocr_id_info.passport_no


def test_rpc_signature_scheme(emulator: EmulatorHandle) -> None:
    tx = emulator.create_transaction("ID_OCR", merchant_biz_id="rpc1")
    emulator.complete(tx, passed="N", sub_code="211")
    with CloudAuthClient(settings_for(emulator, signature_scheme="rpc").provider) as c:
        result = c.check_result(transaction_id=tx, merchant_biz_id="rpc1", product_code="ID_OCR")
        ocr = c.doc_ocr_v2(
            merchant_biz_id="b1",
            merchant_user_id="u1",
            doc_type="00000006",
            image_base64=base64.b64encode(jpeg()).decode(),
        )
    assert (result.passed_bool, result.sub_code) == (False, "211")
    assert ocr.passed_bool is True


def test_wrong_secret_is_a_credentials_error_not_retried(emulator: EmulatorHandle) -> None:
    settings = settings_for(emulator, access_key_secret="not-the-secret").provider
    with CloudAuthClient(settings) as c, pytest.raises(CredentialsError) as info:
        c.check_result(transaction_id="t1", merchant_biz_id="b1", product_code="eKYC")
    assert info.value.code == "SignatureDoesNotMatch"
    assert not info.value.resign_may_help
    assert emulator.stats()["rejected"].get("SignatureDoesNotMatch") == 1


def test_unknown_access_key(emulator: EmulatorHandle) -> None:
    with (
        CloudAuthClient(settings_for(emulator, access_key_id="nobody").provider) as c,
        pytest.raises(CredentialsError) as info,
    ):
        c.check_result(transaction_id="t1", merchant_biz_id="b1", product_code="eKYC")
    assert info.value.code == "InvalidAccessKeyId.NotFound"


def test_throttling_is_retried_until_the_window_frees(emulator: EmulatorHandle) -> None:
    tx = emulator.create_transaction("eKYC", merchant_biz_id="thr1")
    emulator.complete(tx)
    emulator.set_quotas({"eKYC:CheckResult": 1})
    settings = settings_for(emulator).provider
    with CloudAuthClient(settings, max_attempts=1) as once:
        once.check_result(transaction_id=tx, merchant_biz_id="thr1", product_code="eKYC")
        with pytest.raises(ThrottledError) as info:
            once.check_result(transaction_id=tx, merchant_biz_id="thr1", product_code="eKYC")
    assert (info.value.status, info.value.code) == (403, "Throttling.Api")
    # retries spaced 0.5, 1, 2 s (halved by jitter at most) outlast the 1-second window
    with CloudAuthClient(settings, max_attempts=5, backoff=Backoff(base=0.5, cap=2)) as patient:
        result = patient.check_result(
            transaction_id=tx, merchant_biz_id="thr1", product_code="eKYC"
        )
    assert result.passed_bool is True
    stats = stats_of(emulator, "CheckResult", "eKYC")
    assert stats["served"] == 2
    assert stats["throttled"] >= 1
    assert stats["max_in_window"] == 1


def test_503_exhausts_attempts(emulator: EmulatorHandle) -> None:
    tx = emulator.create_transaction("eKYC", merchant_biz_id="f503")
    emulator.complete(tx)
    emulator.set_faults(error_503_rate=1.0)
    with (
        CloudAuthClient(settings_for(emulator).provider, backoff=Backoff(0.01, 0.02)) as c,
        pytest.raises(TransientError) as info,
    ):
        c.check_result(transaction_id=tx, merchant_biz_id="f503", product_code="eKYC")
    assert info.value.code == "ServiceUnavailable"
    assert stats_of(emulator, "CheckResult", "eKYC")["errors"] == 3


def test_truncated_doc_ocr_reply_is_not_repeated(emulator: EmulatorHandle) -> None:
    """A billed call whose reply broke may have been processed: exactly one attempt."""
    emulator.set_faults(truncate_rate=1.0, actions=["DocOcrV2"])
    with (
        CloudAuthClient(settings_for(emulator).provider, backoff=Backoff(0.01, 0.02)) as c,
        pytest.raises(TransientError) as info,
    ):
        c.doc_ocr_v2(
            merchant_biz_id="b1",
            merchant_user_id="u1",
            doc_type="00000006",
            image_base64=base64.b64encode(jpeg()).decode(),
        )
    assert info.value.maybe_processed
    assert info.value.code == "MalformedResponse"
    stats = stats_of(emulator, "DocOcrV2", "ID_OCR_MIN")
    assert stats["served"] == 1


@pytest.mark.parametrize("fault", ["non_json_rate", "drop_rate", "truncate_rate"])
def test_check_result_recovers_from_broken_replies(emulator: EmulatorHandle, fault: str) -> None:
    tx = emulator.create_transaction("eKYC", merchant_biz_id="brk1")
    emulator.complete(tx)
    emulator.set_faults(**{fault: 1.0})
    with CloudAuthClient(settings_for(emulator).provider, backoff=Backoff(0.01, 0.02)) as c:
        with pytest.raises(TransientError) as info:
            c.check_result(transaction_id=tx, merchant_biz_id="brk1", product_code="eKYC")
        assert info.value.maybe_processed
        emulator.set_faults(**{fault: 0.0})
        result = c.check_result(transaction_id=tx, merchant_biz_id="brk1", product_code="eKYC")
    assert result.passed_bool is True


def test_account_fault_stops_at_once(emulator: EmulatorHandle, client: CloudAuthClient) -> None:
    emulator.set_faults(forbidden_code="Forbidden.AccountAccessDenied")
    with pytest.raises(AccountError) as info:
        client.initialize(product_code="eKYC", merchant_biz_id="b1", merchant_user_id="u1")
    assert info.value.stops_lane
    assert info.value.status == 403
    assert emulator.stats()["rejected"].get("Forbidden.AccountAccessDenied") == 1


def test_provider_side_validation_surfaces_as_permanent(client: CloudAuthClient) -> None:
    # A 1x1 image passes no header check of ours only if sent by URL; the emulator rejects it.
    image = ImageServer(jpeg(1, 1))
    thread = threading.Thread(target=image.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        with pytest.raises(PermanentError) as info:
            client.doc_ocr_v2(
                merchant_biz_id="b1",
                merchant_user_id="u1",
                doc_type="00000006",
                image_url=f"http://127.0.0.1:{image.server_address[1]}/tiny.jpg",
            )
    finally:
        image.shutdown()
        image.server_close()
    assert info.value.status is not None
    assert 400 <= info.value.status < 500


def test_doc_ocr_with_another_product_is_refused_before_any_call(
    emulator: EmulatorHandle, client: CloudAuthClient
) -> None:
    def seen() -> tuple[object, object]:
        stats = emulator.stats()
        return stats["actions"].get("DocOcrV2"), stats["rejected"]

    before = seen()
    with pytest.raises(RequestValidationError, match="ID_OCR_MIN"):
        client.doc_ocr_v2(
            merchant_biz_id="b1",
            merchant_user_id="u1",
            doc_type="00000006",
            image_base64=base64.b64encode(jpeg()).decode(),
            product_code="ID_OCR",
        )
    assert seen() == before


def test_deadline_caps_a_slow_attempt(emulator: EmulatorHandle) -> None:
    tx = emulator.create_transaction("eKYC", merchant_biz_id="slow1")
    emulator.complete(tx)
    emulator.set_faults(latency_ms=1500)
    with (
        CloudAuthClient(settings_for(emulator, read_timeout=30).provider) as c,
        pytest.raises(TransientError) as info,
    ):
        c.check_result(
            transaction_id=tx,
            merchant_biz_id="slow1",
            product_code="eKYC",
            ctx=CallContext(deadline=time.time() + 0.3),
        )
    assert info.value.code == "HttpTimeout"


def test_cli_check_result(
    emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tx = emulator.create_transaction("eKYC", merchant_biz_id="cli1")
    emulator.complete(tx)
    monkeypatch.setenv("IDV_ENDPOINT", emulator.url)
    monkeypatch.setenv("IDV_ACCESS_KEY_ID", emulator.access_key_id)
    monkeypatch.setenv("IDV_ACCESS_KEY_SECRET", emulator.access_key_secret)
    parser = argparse.ArgumentParser()
    api.register(parser.add_subparsers(dest="command"))
    argv = ["api", "check-result", "--transaction-id", tx, "--merchant-biz-id", "cli1"]
    args = parser.parse_args([*argv, "--return-image"])
    assert args.handler(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["Passed"] == "Y"
    assert out["ExtFaceInfo"]["faceImg"].startswith("<elided: ")
    args = parser.parse_args(
        ["api", "check-result", "--transaction-id", "nope", "--merchant-biz-id", "x"]
    )
    assert args.handler(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("idv-worker api check-result: TransactionIdInvalid: ")
