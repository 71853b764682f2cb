"""Malformed success replies from the emulator (fault ``malformed_success``): each becomes a
``MalformedResponse`` naming the field - retried for CheckResult, held back for DocOcrV2."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from tests.fixtures.emulator import EmulatorHandle, settings_for
from worker.cloudauth.client import Backoff, CloudAuthClient
from worker.cloudauth.errors import MalformedResponse


def jpeg() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (640, 400), (30, 60, 90)).save(buf, "JPEG", quality=60)
    return base64.b64encode(buf.getvalue()).decode()


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        ("no_result", "Result"),
        ("bad_passed", "Result.Passed"),
        ("wrong_type", "Result.SubCode"),
        ("deep", "body"),
        ("oversized", "body"),
    ],
)
def test_check_result_refuses_then_recovers(
    emulator: EmulatorHandle, kind: str, field: str
) -> None:
    biz = "mal" + kind.replace("_", "")
    tx = emulator.create_transaction("eKYC", merchant_biz_id=biz)
    emulator.complete(tx)
    emulator.set_faults(malformed_success=kind, actions=["CheckResult"])
    settings = settings_for(emulator, max_response_bytes=8 * 1024 * 1024).provider
    with CloudAuthClient(settings, backoff=Backoff(0.01, 0.02), max_attempts=2) as client:
        with pytest.raises(MalformedResponse) as info:
            client.check_result(transaction_id=tx, merchant_biz_id=biz, product_code="eKYC")
        assert info.value.field == field
        assert info.value.retryable
        emulator.set_faults(malformed_success=None)
        result = client.check_result(transaction_id=tx, merchant_biz_id=biz, product_code="eKYC")
    assert result.passed_bool is True


def test_a_malformed_doc_ocr_success_is_sent_once_and_held_back(emulator: EmulatorHandle) -> None:
    emulator.set_faults(malformed_success="bad_passed", actions=["DocOcrV2"])
    client = CloudAuthClient(settings_for(emulator).provider, backoff=Backoff(0.01, 0.02))
    with client, pytest.raises(MalformedResponse) as info:
        client.doc_ocr_v2(
            merchant_biz_id="malocr",
            merchant_user_id="u1",
            doc_type="00000006",
            image_base64=jpeg(),
        )
    assert (info.value.field, info.value.retryable, info.value.billed) == (
        "Result.Passed",
        False,
        True,
    )
    served = emulator.stats()["actions"]["DocOcrV2"]["ID_OCR_MIN"]["served"]
    assert served == 1
