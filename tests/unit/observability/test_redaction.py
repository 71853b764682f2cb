"""Redaction: secrets, links and personal data out; software names and ids left alone."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.observability import redact_text, scrub
from worker.observability.sentry import before_breadcrumb, before_send

R = "<redacted>"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "GET https://b.oss-cn-hongkong.aliyuncs.com/v/a.mp4?Expires=1&OSSAccessKeyId=AK"
            "&Signature=abc%2F done",
            f"GET https://b.oss-cn-hongkong.aliyuncs.com/v/a.mp4?{R} done",
        ),
        ("redis://:hunter2@redis:6379/0", f"redis://:{R}@redis:6379/0"),
        ("https://user:pw@example.com/x", f"https://user:{R}@example.com/x"),
        (
            "AccessKeyId=LTAI5t Signature=abc SecurityToken=CAIS&Action=CheckResult",
            f"AccessKeyId={R} Signature={R} SecurityToken={R}&Action=CheckResult",
        ),
        ('{"callbackToken": "tok-1", "passed": "Y"}', f'{{"callbackToken": "{R}", "passed": "Y"}}'),
        ("AccessKeySecret: s3cr3t", f"AccessKeySecret: {R}"),
        ("Authorization: Bearer abcdefghijkl", f"Authorization: {R} {R}"),
        ("name=Zhang San idNumber=110101199001011234 ok", f"name={R} idNumber={R} ok"),
        ('{"fullName": "Zhang San", "birthDate": "1990-01-01"}',
         f'{{"fullName": "{R}", "birthDate": "{R}"}}'),
    ],
)  # fmt: skip
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "sdk.name=sentry.python server_name=worker-1",
        "Task idv.onboarding.process[3f1c] received",
        "name=idv.onboarding.process retries=2",
        "filename=manifest.csv lane=bulk",
        "https://cloudauth-intl.cn-hongkong.aliyuncs.com/ answered 200",
    ],
)
def test_harmless_text_is_left_alone(text: str) -> None:
    assert redact_text(text) == text


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_a_signature_never_survives(noise: str) -> None:
    text = f"{noise} https://h/p?X-Amz-Signature=SECRETMARKER {noise}"
    assert "SECRETMARKER" not in redact_text(text)


def test_scrub_keeps_software_names_and_drops_personal_ones() -> None:
    event = {
        "sdk": {"name": "sentry.python", "packages": [{"name": "pypi:sentry-sdk"}]},
        "server_name": "worker-1",
        "contexts": {"runtime": {"name": "CPython"}, "os": {"name": "Linux"}},
        "threads": {"values": [{"name": "MainThread"}]},
        "tags": {"task": "idv.onboarding.process", "name": "idv.batch.process_chunk"},
        "extra": {
            "name": "Zhang San",
            "idNumber": "110101199001011234",
            "ocrIdInfo": {"name": "x"},
            "faceImg": "base64...",
            "docVideoUrl": "https://x/v.mp4?Signature=s",
            "detail": "fetched https://x/a?Signature=SECRETMARKER",
        },
    }
    out = scrub(event)
    assert out["sdk"] == event["sdk"]
    assert out["server_name"] == "worker-1"
    assert out["contexts"] == event["contexts"]
    assert out["threads"] == event["threads"]
    assert out["tags"] == event["tags"]
    assert out["extra"] == {
        "name": R,
        "idNumber": R,
        "ocrIdInfo": R,
        "faceImg": R,
        "docVideoUrl": R,
        "detail": f"fetched https://x/a?{R}",
    }


def test_http_breadcrumbs_lose_query_fragment_and_bodies() -> None:
    crumb = {
        "type": "http",
        "category": "httplib",
        "data": {
            "url": "https://cloudauth-intl.cn-hongkong.aliyuncs.com/?Signature=S#frag",
            "http.method": "POST",
            "http.query": "AccessKeyId=AK&Signature=S&SecurityToken=T",
            "http.fragment": "frag",
            "http.request.body": "CertName=Zhang",
            "status_code": 200,
        },
    }
    out = before_breadcrumb(crumb, {})
    assert out["data"] == {
        "url": "https://cloudauth-intl.cn-hongkong.aliyuncs.com/",
        "http.method": "POST",
        "status_code": 200,
    }


def test_before_send_drops_request_and_user() -> None:
    event = {"request": {"url": "x"}, "user": {"id": "1"}, "message": "name=Li Lei"}
    assert before_send(event, {}) == {"message": f"name={R}"}
