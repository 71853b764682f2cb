"""A marker in every personal field the seeds define, and in every form of a storage token,
goes through our logging and the Sentry SDK: none comes out.

The fields come from the emulator's own copy of the seeds' OCR tables (every document type,
both card sides) plus the seeds' other personal fields (images, face attributes, user ids,
links), so a field the models forget to mark fails here. Forms: ``key=value``, JSON, JSON
inside a JSON string, Python reprs, Sentry ``extra`` mappings, exception messages and log
breadcrumbs.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import sentry_sdk
from pydantic import SecretStr

from tests.integration.observability.test_no_leaks import CapturingTransport
from worker.devtools.personal_fields import TARGET, render
from worker.emulator.doctypes import DOC_TYPES
from worker.observability import configure_logging, get_logger, init_sentry, scrub
from worker.observability.personal_fields import PERSONAL_FIELDS
from worker.settings import ObservabilitySettings

# Seeds 000-002: personal fields outside the OCR tables.
SEED_OTHER_FIELDS = (
    "ocrIdInfo", "ocrIdEditInfo", "ocrIdBackInfo", "expireDate", "issueDate", "originOfIssue",
    "idImage", "idBackImage", "faceImg", "docVideoUrl", "faceAge", "faceGender",
    "faceRegistrationID", "duplicateFace", "faceId", "merchantUserId", "deviceToken",
)  # fmt: skip
SEED_FIELDS = tuple(
    sorted(
        {f for spec in DOC_TYPES.values() for f in (*spec.front, *spec.back)}
        | set(SEED_OTHER_FIELDS)
    )
)


def _marker(field: str) -> str:
    return f"Qz{field.replace('_', '')}Mk91"


def _forms(field: str, marker: str) -> list[str]:
    return [
        f"{field}={marker}",
        f"{field}: {marker} and more",
        json.dumps({field: marker, "passed": "Y"}),
        json.dumps({"body": json.dumps({field: marker})}),  # JSON-escaped inside JSON
        repr({field: marker}),
        f"result {json.dumps({'Result': {'ExtIdInfo': json.dumps({field: marker})}})}",
    ]


# Each storage/STS token form; MARK is the secret part.
MARK = "QzTokenMk5523"
TOKEN_FORMS = {
    "OSS link": f"https://b.oss-cn-hongkong.aliyuncs.com/v.webm?Expires=1&OSSAccessKeyId=AK"
    f"&Signature=S&security-token={MARK}",
    "OSS link, JSON-escaped": json.dumps(
        {"u": f"https://b.oss.aliyuncs.com/v.webm?Expires=1&security-token={MARK}"}
    )
    .replace("/", "\\/")
    .replace("&", "\\u0026"),
    "OSS link, percent-encoded": "next=https%3A%2F%2Fb.oss.aliyuncs.com%2Fv.webm%3FExpires%3D1"
    f"%26security-token%3D{MARK}%26Signature%3DS",
    # A CDN's own signing parameter is no known key: the whole query of a link goes.
    "CDN link, percent-encoded": f"next=https%3A%2F%2Fcdn.example%2Fa.jpg%3Fauth_key%3D{MARK}",
    "CDN link, JSON-escaped": json.dumps(
        {"u": f"https://cdn.example/a.jpg?auth_key={MARK}"}
    ).replace("/", "\\/"),
    "query string alone": f"Expires=1&security-token={MARK}&Signature=x",
    "query string, percent-encoded": f"q=Expires%3D1%26security-token%3D{MARK}",
    "x-oss-security-token header": f"x-oss-security-token: {MARK}",
    "x-oss-security-token JSON": json.dumps({"headers": {"x-oss-security-token": MARK}}),
    "x-oss-signature": f"x-oss-signature={MARK}",
    "X-Amz-Security-Token": f"X-Amz-Security-Token={MARK}&X-Amz-Date=1",
    "x-amz-credential": f"x-amz-credential={MARK}%2F20260101",
    "X-Amz-Signature, escaped": json.dumps({"u": f"https://s3/k?X-Amz-Signature={MARK}"}).replace(
        "/", "\\/"
    ),
    "SecurityToken RPC": f"Action=CheckResult&SecurityToken={MARK}",
    "variable _SECRET": f"IDV_ACCESS_KEY_SECRET={MARK}",
    "variable _SECRET quoted": f'IDV_WEBHOOK_SECRET="{MARK}"',
    "variable _PASSWORD": f"env IDV_REDIS_PASSWORD={MARK} set",
    "variable _TOKEN list": f"IDV_CALLBACK_TOKENS=first,{MARK}",
    "variable _TOKEN": f"IDV_S3_SESSION_TOKEN={MARK}",
    "cookie header": f"Cookie: session=abc; sid={MARK}",
    "set-cookie": f"set-cookie: sid={MARK}; Path=/; HttpOnly",
}
# Personal values that no model holds but that a log line may carry.
GENERIC = {
    "phone": "QzPhoneMk0001",
    "phoneNumber": "QzPhoneNumberMk0002",
    "mobile": "QzMobileMk0003",
    "email": "QzEmailMk0004",
}


@pytest.fixture
def sentry() -> Iterator[CapturingTransport]:
    transport = CapturingTransport()
    settings = ObservabilitySettings(sentry_dsn=SecretStr("https://public@127.0.0.1:9/1"))
    assert init_sentry(settings, transport=transport)
    yield transport
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


def test_the_generated_field_list_is_what_the_models_say() -> None:
    assert TARGET.read_text(encoding="utf-8") == render(), "run: make personal-fields"


@pytest.mark.parametrize("field", SEED_FIELDS)
def test_every_personal_field_of_the_seeds_is_marked_in_a_model(field: str) -> None:
    assert field in PERSONAL_FIELDS


def _run(lines: list[str], mapping: dict[str, object]) -> tuple[str, str]:
    """Log each line, send one event per line plus one with ``mapping`` in ``extra``;
    the log output and every Sentry envelope, as text."""
    logs = io.StringIO()
    configure_logging("INFO", "json", stream=logs)
    log = get_logger("security")
    for line in lines:
        log.info("provider said %s", line)  # a breadcrumb of the events below
        log.warning(line)
    try:
        raise RuntimeError(" | ".join(lines))
    except RuntimeError:
        sentry_sdk.capture_exception()
    with sentry_sdk.new_scope() as scope:
        scope.set_extra("detail", mapping)
        scope.set_context("result", mapping)
        sentry_sdk.capture_message("with data")
    sentry_sdk.flush()
    for handler in logging.getLogger().handlers:
        handler.flush()
    transport = sentry_sdk.get_client().transport
    assert isinstance(transport, CapturingTransport)
    return logs.getvalue(), transport.raw()


def test_no_personal_marker_reaches_logs_or_sentry(sentry: CapturingTransport) -> None:
    lines = [form for f in SEED_FIELDS for form in _forms(f, _marker(f))]
    mapping: dict[str, object] = {f: _marker(f) for f in SEED_FIELDS}
    mapping["nested"] = {"response": {f: _marker(f) for f in SEED_FIELDS}}
    logs, events = _run(lines, mapping)
    assert sentry.events(), "nothing reached Sentry: the scan would prove nothing"
    assert logs.count("\n") >= len(lines)
    leaked = [f for f in SEED_FIELDS if _marker(f) in logs or _marker(f) in events]
    assert leaked == []
    assert "Mk91" not in logs + events


def test_no_token_form_reaches_logs_or_sentry(sentry: CapturingTransport) -> None:
    logs, events = _run(list(TOKEN_FORMS.values()), {"forms": dict(TOKEN_FORMS)})
    assert sentry.events()
    for case, text in TOKEN_FORMS.items():
        assert MARK not in logs + events, case
        assert MARK in text  # the form carried it


@pytest.mark.parametrize(("case", "text"), TOKEN_FORMS.items(), ids=TOKEN_FORMS.keys())
def test_each_token_form_is_redacted_on_its_own(case: str, text: str) -> None:
    from worker.observability import redact_text

    assert MARK not in redact_text(text), case


def test_phone_numbers_email_and_cookies_stay_redacted(sentry: CapturingTransport) -> None:
    from worker.observability import redact_text

    for key, marker in GENERIC.items():
        for form in (f"{key}={marker}", f'"{key}": "{marker}"', f"{key}: {marker}"):
            assert marker not in redact_text(form), form
        assert scrub({key: marker}) == {key: "<redacted>"}
    for key in ("cookie", "Cookie", "set-cookie", "cookies"):
        assert scrub({key: "sid=QzCookieMk"}) == {key: "<redacted>"}, key
    assert "QzCookieMk" not in redact_text("Cookie: a=1; sid=QzCookieMk")
    logs, events = _run(
        [f"{k}={v}" for k, v in GENERIC.items()],
        {**GENERIC, "cookie": "sid=QzCookieMk"},
    )
    for marker in (*GENERIC.values(), "QzCookieMk"):
        assert marker not in logs + events, marker


@pytest.mark.parametrize(
    "text",
    [
        "passed=Y subCode=200 transactionId=hk0123",
        "sdk.name=sentry.python server_name=worker-1",
        "x-oss-request-id=5F00 lane=bulk",
        "tokens=5 refill_rate=10",
        "IDV_S3_BUCKET=idv-evidence IDV_QUOTAS=ID_OCR_MIN=10",
        "https://cloudauth-intl.cn-hongkong.aliyuncs.com/ answered 200",
    ],
)
def test_harmless_neighbours_are_left_alone(text: str) -> None:
    from worker.observability import redact_text

    assert redact_text(text) == text
