"""What the onboarding flow writes: the S3 result document, the Redis record, the stream event,
and the signed webhook. Pure functions; no network (the webhook's HTTP edge uses MockTransport)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from worker.cloudauth.models import CheckResultResult
from worker.evidence import BadEvidence, VideoArchive, decode_image, sniff_image_type
from worker.jobs import OnboardingJob
from worker.keys import Evidence
from worker.onboarding import (
    Archived,
    build_event,
    build_record,
    build_result_document,
)
from worker.settings import WebhookSettings, load_settings
from worker.storage import StoredObject
from worker.stores import encode_event
from worker.webhook import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    WebhookConfigError,
    WebhookError,
    WebhookSender,
    sign,
    verify_signature,
)

TID = "hk00112233445566778899aabbccddee"
FACE_B64 = "/9j/4AAQSkZJRgABAQAAAQABAAD"
LINK = "https://bucket.oss.example.com/v.webm?Expires=1&OSSAccessKeyId=AK&Signature=abc"
NAME = "CHAN Tai Man"
ID_NUMBER = "A1234563"


def reply() -> CheckResultResult:
    face = {"faceAttack": "N", "faceImg": FACE_B64, "docVideoUrl": LINK, "faceComparisonScore": 97}
    ids = {
        "ocrIdInfo": {"englishName": NAME, "idNumber": ID_NUMBER},
        "idImage": FACE_B64,
        "idBackImage": FACE_B64,
        "spoofInfo": {"spoofResult": "N"},
    }
    body = {
        "RequestId": "REQ-1",
        "Code": "Success",
        "Result": {
            "Passed": "Y",
            "SubCode": "200",
            "ExtFaceInfo": json.dumps(face),
            "ExtIdInfo": json.dumps(ids),
        },
    }
    return CheckResultResult.from_body(body)


def stored(name: str, size: int = 10) -> StoredObject:
    return StoredObject(key=f"evidence/2026/01/02/{TID}/{name}", size=size, sha256="ab" * 32,
                        etag="e")  # fmt: skip


def archived(lost: str | None = None) -> Archived:
    out = Archived()
    if lost is None:
        out.video = VideoArchive(stored("video.webm", 5000), reused=False, links_used=1, resumes=0)
        out.video_status = "stored"
    else:
        out.video_status = "lost"
        out.lost_reason = lost
    out.images = {
        Evidence.FACE: stored("face.jpg"),
        Evidence.ID_FRONT: stored("id-front.jpg"),
        Evidence.ID_BACK: stored("id-back.jpg"),
    }
    return out


JOB = OnboardingJob(
    transaction_id=TID, product_code="eKYC", merchant_biz_id="biz1", completed_at=1_767_312_000.0
)


def test_result_document_keeps_the_result_and_replaces_images_and_link() -> None:
    doc = build_result_document(JOB, reply(), archived(), checked_at=1_767_312_005.0)
    text = json.dumps(doc)
    assert FACE_B64 not in text
    assert "Signature=" not in text
    assert "oss.example.com" not in text
    face = doc["result"]["ExtFaceInfo"]
    assert face["faceImg"]["key"].endswith("/face.jpg")
    assert face["docVideoUrl"] == {"key": f"evidence/2026/01/02/{TID}/video.webm",
                                   "sha256": "ab" * 32, "size": 5000}  # fmt: skip
    assert doc["result"]["ExtIdInfo"]["idBackImage"]["key"].endswith("/id-back.jpg")
    # The OCR result itself belongs in the (encrypted) S3 document.
    assert doc["result"]["ExtIdInfo"]["ocrIdInfo"]["idNumber"] == ID_NUMBER
    assert doc["completedAt"] == "2026-01-02T00:00:00.000+00:00"
    assert doc["videoStatus"] == "stored"


def test_record_and_event_hold_no_personal_data() -> None:
    record = build_record(JOB, reply(), archived(), stored("r.json"), checked_at=1.0).to_dict()
    event = build_event(record)
    for text in (json.dumps(record), json.dumps(event)):
        for secret in (NAME, ID_NUMBER, FACE_B64, "http", "Signature"):
            assert secret not in text
    assert record["status"] == "complete"
    assert record["evidence"]["id_back"]["key"].endswith("/id-back.jpg")
    # The results stream accepts it as is (put_and_publish adds kind and id): flat strings.
    fields = encode_event({**event, "kind": "tx", "id": TID})
    assert fields["status"] == "complete"
    assert fields["video_key"].endswith("/video.webm")


def test_lost_evidence_shows_in_record_and_event() -> None:
    record = build_record(JOB, reply(), archived(lost="deadline passed (expired)"), stored("r"),
                          checked_at=1.0).to_dict()  # fmt: skip
    assert record["status"] == "evidence_lost"
    assert record["video_status"] == "lost"
    assert record["evidence"]["video"] is None
    assert record["evidence_lost_reason"] == "deadline passed (expired)"
    fields = encode_event({**build_event(record), "kind": "tx", "id": TID})
    assert fields["status"] == "evidence_lost"
    assert "video_key" not in fields


def _reply_with(sub_code: str) -> CheckResultResult:
    body = {"RequestId": "R", "Code": "Success", "Result": {"Passed": "N", "SubCode": sub_code}}
    return CheckResultResult.from_body(body)


@pytest.mark.parametrize(
    ("sub_code", "known", "category", "billed", "step"),
    [
        ("200", True, "passed", True, "accept"),
        ("204", True, "face_mismatch", True, "retry_face_capture"),
        ("205", True, "liveness_attack", True, "manual_review"),
        ("206", True, "policy", True, "secure_device_and_retry"),
        ("233", True, "duplicate_face", True, "review_duplicate"),
        ("211", True, "image_quality", True, "recapture_document"),
        ("212", True, "document_fraud", True, "manual_review"),
        ("213", True, "document_type", True, "check_doc_type_and_recapture"),
        ("201", False, "unknown", None, "manual_review"),
    ],
)
def test_record_event_and_webhook_carry_the_sub_code_catalogue(
    sub_code: str, known: bool, category: str, billed: bool | None, step: str
) -> None:
    record = build_record(JOB, _reply_with(sub_code), archived(), stored("r"), checked_at=1.0)
    data = record.to_dict()
    assert data["sub_code"] == sub_code
    assert data["sub_code_known"] is known
    assert data["sub_code_category"] == category
    assert data["sub_code_billed"] is billed
    assert data["next_step"] == step
    fields = encode_event({**build_event(record), "kind": "tx", "id": TID})
    assert fields["sub_code_category"] == category
    assert fields["next_step"] == step
    assert fields["sub_code_known"] == ("true" if known else "false")
    assert ("sub_code_billed" in fields) is (billed is not None)
    from worker.webhook import build_event as webhook_event

    assert webhook_event(data, now=1.0)["data"]["sub_code_category"] == category


def test_decode_image_is_strict_and_sniffs_the_type() -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 8
    import base64

    encoded = base64.b64encode(png).decode()
    assert decode_image(f"data:image/png;base64,{encoded[:8]}\n{encoded[8:]}", TID, "face") == png
    assert sniff_image_type(png) == "image/png"
    assert sniff_image_type(b"\xff\xd8\xff\xe0") == "image/jpeg"
    with pytest.raises(BadEvidence, match="not valid Base64"):
        decode_image("not base64!!", TID, "face.jpg")
    with pytest.raises(BadEvidence, match="empty"):
        decode_image("", TID, "face.jpg")


# ------------------------------------------------------------------ webhook


def test_signature_round_trip_and_rejections() -> None:
    body = b'{"a":1}'
    header = sign("s3cret", body, 1_000)
    assert header.startswith("t=1000,v1=")
    assert verify_signature("s3cret", header, body, now=1_100)
    assert not verify_signature("s3cret", header, body + b" ", now=1_100)
    assert not verify_signature("other", header, body, now=1_100)
    assert not verify_signature("s3cret", header, body, now=1_000 + 301)  # stale
    assert not verify_signature("s3cret", "v1=abc", body, now=1_000)
    assert not verify_signature("s3cret", "t=x,v1=abc", body, now=1_000)
    # During a secret rotation a sender may put several v1 values; one valid is enough.
    rotated = header + ",v1=" + "0" * 64
    assert verify_signature("s3cret", rotated, body, now=1_000)


@pytest.mark.parametrize(
    ("signed_at", "accepted"),
    [
        (10_000 - 300, True),  # as old as the tolerance allows
        (10_000 - 301, False),  # older
        (10_000 + 300, True),  # as far ahead as clock skew is forgiven
        (10_000 + 301, False),  # dated in the future beyond the tolerance
        (10_000 + 86_400, False),  # a day ahead: a replay kept for later
    ],
)
def test_a_signature_dated_in_the_future_is_refused(signed_at: int, accepted: bool) -> None:
    body = b'{"a":1}'
    header = sign("s3cret", body, signed_at)
    assert verify_signature("s3cret", header, body, now=10_000) is accepted


def test_the_tolerance_bounds_both_directions() -> None:
    body = b"{}"
    for skew, accepted in ((60, True), (61, False), (-60, True), (-61, False)):
        header = sign("s3cret", body, 10_000 + skew)
        assert verify_signature("s3cret", header, body, now=10_000, tolerance_s=60) is accepted


def _sender(handler: Any) -> WebhookSender:
    return WebhookSender("https://hooks.example/idv", "s3cret",
                         transport=httpx.MockTransport(handler), clock=lambda: 2_000.0)  # fmt: skip


def test_sender_posts_a_signed_event() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    record = build_record(JOB, reply(), archived(), stored("r.json"), checked_at=1.0).to_dict()
    assert _sender(handler).deliver(record) == 204
    request = seen[0]
    assert verify_signature("s3cret", request.headers[SIGNATURE_HEADER], request.content,
                            now=2_000)  # fmt: skip
    event = json.loads(request.content)
    assert event["type"] == "onboarding.result"
    assert event["data"]["transaction_id"] == TID
    assert request.headers[EVENT_ID_HEADER] == event["id"]


@pytest.mark.parametrize(
    ("answer", "retryable"),
    [(503, True), (500, True), (429, True), (408, True), (400, False), (404, False), (302, False)],
)
def test_sender_classifies_failures(answer: int, retryable: bool) -> None:
    sender = _sender(lambda request: httpx.Response(answer, headers={"location": "http://x/"}))
    with pytest.raises(WebhookError) as info:
        sender.deliver({"transaction_id": TID})
    assert info.value.status == answer
    assert info.value.retryable is retryable
    assert "hooks.example" not in str(info.value)


def test_sender_network_error_is_retryable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(WebhookError) as info:
        _sender(handler).deliver({"transaction_id": TID})
    assert info.value.retryable
    assert info.value.status is None


def test_sender_configuration() -> None:
    assert WebhookSender.from_settings(load_settings().webhooks) is None
    with pytest.raises(WebhookConfigError):
        # Settings refuse this at load; the sender checks it again for settings built otherwise.
        WebhookSender.from_settings(
            WebhookSettings.model_construct(webhook_url="https://h.example/", webhook_secret=None)
        )
    sender = WebhookSender.from_settings(
        load_settings(webhook_url="https://h.example/", webhook_secret=SecretStr("k")).webhooks
    )
    assert sender is not None
    sender.close()
