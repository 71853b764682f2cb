"""CloudAuthClient at the HTTP edge (httpx.MockTransport): placement, headers, signing, retries,
the gate, deadlines and error mapping."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from PIL import Image

from worker.cloudauth.client import Backoff, Clock, CloudAuthClient
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
from worker.cloudauth.signing import (
    EMPTY_SHA256,
    Credentials,
    acs3_canonical_request,
    acs3_signature,
    parse_acs3_authorization,
    rpc_signature,
    sha256_hex,
)
from worker.ratelimit import CallContext, DeadlineUnreachable, Lane
from worker.settings import ProviderSettings, load_settings

SECRET = "s3cr3t-value"
T0 = 1_800_000_000.0
OK_CHECK = {
    "RequestId": "REQ-1",
    "Code": "Success",
    "Message": "success",
    "Result": {"Passed": "Y", "SubCode": "200", "ExtIdInfo": '{"ocrIdPassed":"Y"}'},
}


def make_settings(**kw: Any) -> ProviderSettings:
    base: dict[str, Any] = {
        "endpoint": "http://provider.test:8080",
        "access_key_id": "AKID",
        "access_key_secret": SECRET,
        "security_token": None,
        "signature_scheme": "acs3",
        "connect_timeout": 2.0,
        "read_timeout": 7.0,
    }
    return load_settings(**{**base, **kw}).provider


class FakeClock:
    def __init__(self) -> None:
        self.t = T0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds

    def clock(self) -> Clock:
        return Clock(now=self.now, sleep=self.sleep)


class RecordingGate:
    def __init__(self, fail_on: int | None = None, clock: FakeClock | None = None) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.fail_on = fail_on
        self.clock = clock

    def acquire(self, product_code: str, api: str, ctx: CallContext) -> None:
        self.events.append(("acquire", product_code, api, ctx.lane))
        if self.fail_on is not None and len(self.acquires) == self.fail_on:
            raise DeadlineUnreachable(f"{product_code}:{api}", ctx.deadline or 0, T0 + 99)

    def feedback(
        self, product_code: str, api: str, *, throttled: bool, sent_at: float | None = None
    ) -> None:
        self.events.append(("feedback", product_code, api, throttled))

    @property
    def acquires(self) -> list[tuple[Any, ...]]:
        return [e for e in self.events if e[0] == "acquire"]

    @property
    def feedbacks(self) -> list[bool]:
        return [e[3] for e in self.events if e[0] == "feedback"]


Reply = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class Script:
    """A transport replaying scripted replies and recording every request."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.replies:
            raise AssertionError("unexpected extra request")
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, Exception):
            raise reply
        if callable(reply) and not isinstance(reply, httpx.Response):
            return reply(request)
        return reply


def ok(body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.Response(200, json=body or OK_CHECK, headers={"x-acs-request-id": "REQ-1"})


def err(status: int, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"RequestId": f"R{status}", "Code": code, "Message": f"{code} happened"}
    return httpx.Response(status, json=body, headers=headers)


def make_client(
    script: Script,
    *,
    gate: RecordingGate | None = None,
    clock: FakeClock | None = None,
    max_attempts: int = 3,
    **settings: Any,
) -> CloudAuthClient:
    nonces = iter(f"{i:032x}" for i in range(1, 1000))
    return CloudAuthClient(
        make_settings(**settings),
        gate=gate,
        transport=httpx.MockTransport(script),
        max_attempts=max_attempts,
        backoff=Backoff(base=0.1, cap=1.0),
        clock=(clock or FakeClock()).clock(),
        nonce_factory=lambda: next(nonces),
    )


def jpeg_b64(width: int = 320, height: int = 240) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (30, 60, 90)).save(buf, "JPEG", quality=40)
    return base64.b64encode(buf.getvalue()).decode()


def verify_acs3(request: httpx.Request, secret: str = SECRET) -> list[str]:
    """Recompute the signature the way the provider does; return the signed header names."""
    auth = parse_acs3_authorization(request.headers["authorization"])
    assert auth is not None
    query = parse_qsl(request.url.query.decode(), keep_blank_values=True)
    payload = sha256_hex(request.content) if request.content else EMPTY_SHA256
    assert request.headers["x-acs-content-sha256"] == payload
    canonical = acs3_canonical_request(
        "POST", "/", query, request.headers, auth.signed_headers, payload
    )
    assert acs3_signature(secret, canonical) == auth.signature
    return list(auth.signed_headers)


def check(client: CloudAuthClient, ctx: CallContext | None = None) -> Any:
    return client.check_result(
        transaction_id="hks0123456789abcdef",
        merchant_biz_id="biz42",
        product_code="eKYC",
        ctx=ctx,
    )


# --- placement and headers ----------------------------------------------------------------


def test_check_result_request_shape() -> None:
    script = Script(ok())
    with make_client(script) as client:
        result = client.check_result(
            transaction_id="hks0123456789abcdef",
            merchant_biz_id="biz42",
            product_code="eKYC",
            is_return_image=True,
        )
    assert result.passed_bool is True
    assert result.request_id == "REQ-1"
    (req,) = script.requests
    assert req.method == "POST"
    assert str(req.url) == (
        "http://provider.test:8080/?IsReturnImage=Y&MerchantBizId=biz42"
        "&TransactionId=hks0123456789abcdef"
    )
    assert req.content == b""
    assert "content-type" not in req.headers
    assert req.headers["host"] == "provider.test:8080"
    assert req.headers["x-acs-action"] == "CheckResult"
    assert req.headers["x-acs-version"] == "2022-08-09"
    assert req.headers["x-acs-date"] == "2027-01-15T08:00:00Z"
    assert req.headers["accept"] == "application/json"
    assert req.headers["user-agent"].startswith("idv-worker/")
    assert req.headers["x-acs-content-sha256"] == EMPTY_SHA256
    assert verify_acs3(req) == [
        "accept",
        "host",
        "user-agent",
        "x-acs-action",
        "x-acs-content-sha256",
        "x-acs-credentials-provider",
        "x-acs-date",
        "x-acs-signature-nonce",
        "x-acs-version",
    ]
    assert SECRET not in str(req.headers)
    assert SECRET.encode() not in req.content


def test_doc_ocr_base64_goes_in_sorted_form_body() -> None:
    image = jpeg_b64()
    script = Script(ok({"RequestId": "R", "Code": "Success", "Result": {"Passed": "N"}}))
    with make_client(script) as client:
        result = client.doc_ocr_v2(
            merchant_biz_id="b1",
            merchant_user_id="user 1+x",
            doc_type="00000001",
            image_base64=image,
            card_side="OCR_ID_NATIONAL_EMBLEM",
            spoof=True,
            face_quality=True,
            id_threshold="2",
        )
    assert result.passed_bool is False
    (req,) = script.requests
    assert req.url.query.decode() == (
        "CardSide=OCR_ID_NATIONAL_EMBLEM&DocType=00000001&IdFaceQuality=T&IdThreshold=2"
        "&MerchantBizId=b1&MerchantUserId=user+1%2Bx&Ocr=T&ProductCode=ID_OCR_MIN&Spoof=T"
    )
    assert req.content.startswith(b"IdOcrPictureBase64=")
    assert parse_qsl(req.content.decode()) == [("IdOcrPictureBase64", image)]
    assert req.headers["content-type"] == "application/x-www-form-urlencoded"
    assert req.headers["x-acs-content-sha256"] == sha256_hex(req.content)
    assert "content-type" in verify_acs3(req)


def test_doc_ocr_url_sends_empty_body_with_content_type() -> None:
    script = Script(ok())
    with make_client(script) as client:
        client.doc_ocr_v2(
            merchant_biz_id="b1",
            merchant_user_id="u1",
            doc_type="01000000",
            image_url="https://img.example/a b.jpg?x=1",
            ocr=False,
        )
    (req,) = script.requests
    assert dict(parse_qsl(req.url.query.decode())) == {
        "DocType": "01000000",
        "IdOcrPictureUrl": "https://img.example/a b.jpg?x=1",
        "MerchantBizId": "b1",
        "MerchantUserId": "u1",
        "Ocr": "F",
        "ProductCode": "ID_OCR_MIN",
    }
    assert req.content == b""
    assert req.headers["content-length"] == "0"
    assert req.headers["content-type"] == "application/x-www-form-urlencoded"
    verify_acs3(req)


def test_initialize_extra_fields_and_body_placement() -> None:
    body = {
        "RequestId": "R",
        "Code": "Success",
        "Result": {"TransactionId": "tx1", "TransactionUrl": "https://flow", "Protocol": "p"},
    }
    script = Script(ok(body))
    with make_client(script) as client:
        result = client.initialize(
            product_code="eKYC",
            merchant_biz_id="m1",
            merchant_user_id="u1",
            meta_info='{"deviceType":"web"}',
            callback_url="https://cb.example/cb?a=1",
            callback_token="tok-1",
            extra={"LanguageConfig": "en", "FacePictureBase64": "AAAA", "DocPageConfig": '["01"]'},
        )
    assert (result.transaction_id, result.transaction_url, result.protocol) == (
        "tx1",
        "https://flow",
        "p",
    )
    (req,) = script.requests
    keys = [k for k, _ in parse_qsl(req.url.query.decode())]
    assert keys == sorted(keys)
    assert "FacePictureBase64" not in keys
    assert set(keys) == {
        "CallbackToken",
        "CallbackUrl",
        "DocPageConfig",
        "LanguageConfig",
        "MerchantBizId",
        "MerchantUserId",
        "MetaInfo",
        "ProductCode",
    }
    assert req.content == b"FacePictureBase64=AAAA"
    verify_acs3(req)


def test_sts_token_headers_are_signed() -> None:
    script = Script(ok())
    with make_client(script, security_token="sts-token-1") as client:
        check(client)
    (req,) = script.requests
    assert req.headers["x-acs-security-token"] == "sts-token-1"
    assert req.headers["x-acs-accesskey-id"] == "AKID"
    assert req.headers["x-acs-credentials-provider"] == "static_sts"
    signed = verify_acs3(req)
    assert {"x-acs-security-token", "x-acs-accesskey-id"} <= set(signed)


def test_rpc_scheme_signs_query_and_body() -> None:
    image = jpeg_b64()
    script = Script(ok())
    with make_client(script, signature_scheme="rpc", security_token="tok") as client:
        client.doc_ocr_v2(
            merchant_biz_id="b1", merchant_user_id="u 1", doc_type="00000006", image_base64=image
        )
    (req,) = script.requests
    query = parse_qsl(req.url.query.decode(), keep_blank_values=True)
    params = dict(query)
    assert params["Action"] == "DocOcrV2"
    assert params["SignatureMethod"] == "HMAC-SHA1"
    assert params["SecurityToken"] == "tok"
    assert params["Timestamp"] == "2027-01-15T08:00:00Z"
    assert "authorization" not in req.headers
    body = parse_qsl(req.content.decode())
    assert rpc_signature(SECRET, "POST", query + body) == params["Signature"]
    assert rpc_signature("wrong", "POST", query + body) != params["Signature"]


def test_endpoint_with_path_is_rejected() -> None:
    with pytest.raises(ValueError, match="without path"):
        CloudAuthClient(make_settings(endpoint="http://h.test/api"))


# --- retries, gate, deadline --------------------------------------------------------------


def test_throttled_retry_reacquires_and_resigns() -> None:
    clock = FakeClock()
    gate = RecordingGate()
    script = Script(err(403, "Throttling.Api"), ok())
    with make_client(script, gate=gate, clock=clock) as client:
        result = check(client, CallContext(lane=Lane.BULK))
    assert result.sub_code == "200"
    assert len(script.requests) == 2
    assert gate.acquires == [("acquire", "eKYC", "CheckResult", Lane.BULK)] * 2
    assert gate.feedbacks == [True, False]
    # acquire precedes every attempt, feedback follows it
    assert [e[0] for e in gate.events] == ["acquire", "feedback", "acquire", "feedback"]
    first, second = script.requests
    assert first.headers["x-acs-signature-nonce"] != second.headers["x-acs-signature-nonce"]
    assert first.headers["authorization"] != second.headers["authorization"]
    assert len(clock.sleeps) == 1
    assert 0.05 <= clock.sleeps[0] <= 0.1
    verify_acs3(second)


def test_transient_errors_exhaust_max_attempts() -> None:
    clock = FakeClock()
    gate = RecordingGate()
    script = Script(err(503, "ServiceUnavailable"))
    with (
        make_client(script, gate=gate, clock=clock, max_attempts=4) as client,
        pytest.raises(TransientError) as info,
    ):
        check(client)
    assert info.value.code == "ServiceUnavailable"
    assert info.value.status == 503
    assert len(script.requests) == 4
    assert len(gate.acquires) == 4
    assert gate.feedbacks == [False] * 4
    # jittered exponential: retry n waits in [d/2, d], d = 0.1 * 2^(n-1), capped at 1.0
    for n, slept in enumerate(clock.sleeps, start=1):
        d = min(1.0, 0.1 * 2 ** (n - 1))
        assert d / 2 <= slept <= d


def test_retry_after_header_sets_minimum_wait() -> None:
    clock = FakeClock()
    script = Script(err(429, "Throttling.User", {"x-acs-retry-after": "1500"}), ok())
    with make_client(script, clock=clock) as client:
        check(client)
    assert clock.sleeps == [1.5]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (err(400, "InvalidParameter"), PermanentError),
        (err(400, "TransactionIdInvalid"), TransactionInvalidError),
        (err(404, "ProcessNotCompleted"), NotReadyError),
        (err(403, "Forbidden.AccountAccessDenied"), AccountError),
        (err(400, "SignatureDoesNotMatch"), CredentialsError),
        (err(401, "UnqualifiedPhoto"), PermanentError),
    ],
)
def test_non_retryable_errors_are_raised_after_one_attempt(
    reply: httpx.Response, expected: type[Exception]
) -> None:
    gate = RecordingGate()
    script = Script(reply)
    with make_client(script, gate=gate) as client, pytest.raises(expected):
        check(client)
    assert len(script.requests) == 1
    assert gate.feedbacks == [False]


def test_nonce_reuse_is_retried_once_with_fresh_values() -> None:
    script = Script(err(400, "SignatureNonceUsed"), err(400, "SignatureNonceUsed"), ok())
    with make_client(script, max_attempts=5) as client, pytest.raises(CredentialsError) as info:
        check(client)
    assert info.value.resign_may_help
    assert len(script.requests) == 2
    nonces = {r.headers["x-acs-signature-nonce"] for r in script.requests}
    assert len(nonces) == 2


def test_deadline_stops_retries_before_sleeping_past_it() -> None:
    clock = FakeClock()
    gate = RecordingGate()
    script = Script(err(403, "Throttling.Api", {"x-acs-retry-after": "5000"}))
    ctx = CallContext(deadline=T0 + 2.0)
    with (
        make_client(script, gate=gate, clock=clock) as client,
        pytest.raises(ThrottledError) as info,
    ):
        check(client, ctx)
    assert info.value.retry_after == 5.0
    assert len(script.requests) == 1
    assert clock.sleeps == []
    assert clock.t <= ctx.deadline  # type: ignore[operator]


def test_deadline_already_passed_sends_nothing() -> None:
    gate = RecordingGate()
    script = Script(ok())
    with make_client(script, gate=gate) as client, pytest.raises(DeadlineUnreachable):
        check(client, CallContext(deadline=T0 - 1))
    assert script.requests == []
    assert gate.events == []


def test_attempt_timeout_is_capped_by_deadline() -> None:
    script = Script(ok())
    with make_client(script) as client:
        check(client, CallContext(deadline=T0 + 3.0))
        check(client)
    capped, default = (r.extensions["timeout"] for r in script.requests)
    assert capped["read"] == pytest.approx(3.0)
    assert capped["connect"] == pytest.approx(2.0)
    assert default["read"] == 7.0
    assert default["connect"] == 2.0


def test_gate_deadline_on_retry_raises_the_provider_error() -> None:
    gate = RecordingGate(fail_on=2)
    script = Script(err(403, "Throttling.Api"), ok())
    with make_client(script, gate=gate) as client, pytest.raises(ThrottledError) as info:
        check(client, CallContext(deadline=T0 + 60))
    assert isinstance(info.value.__cause__, DeadlineUnreachable)
    assert len(script.requests) == 1


def test_gate_deadline_on_first_attempt_propagates() -> None:
    gate = RecordingGate(fail_on=1)
    script = Script(ok())
    with make_client(script, gate=gate) as client, pytest.raises(DeadlineUnreachable):
        check(client, CallContext(deadline=T0 + 60))
    assert script.requests == []


# --- transport failures and malformed replies ---------------------------------------------


def test_read_timeout_is_transient_and_retried_for_check_result() -> None:
    script = Script(httpx.ReadTimeout("timed out"), ok())
    with make_client(script) as client:
        assert check(client).passed == "Y"
    assert len(script.requests) == 2


def test_billed_doc_ocr_is_not_repeated_after_ambiguous_failure() -> None:
    script = Script(httpx.ReadTimeout("timed out"), ok())
    with make_client(script) as client, pytest.raises(TransientError) as info:
        client.doc_ocr_v2(
            merchant_biz_id="b1",
            merchant_user_id="u1",
            doc_type="00000006",
            image_url="https://x/y",
        )
    assert info.value.maybe_processed
    assert info.value.code == "HttpTimeout"
    assert info.value.status is None
    assert len(script.requests) == 1


def test_billed_doc_ocr_is_retried_when_not_sent() -> None:
    script = Script(httpx.ConnectError("refused"), err(503, "ServiceUnavailable"), ok())
    with make_client(script) as client:
        client.doc_ocr_v2(
            merchant_biz_id="b1",
            merchant_user_id="u1",
            doc_type="00000006",
            image_url="https://x/y",
        )
    assert len(script.requests) == 3


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(502, text="<html>bad gateway</html>"),
        httpx.Response(200, content=b'{"RequestId":"R","Code":"Succ'),  # truncated
        httpx.Response(200, content=b""),
        httpx.Response(200, json=["not", "an", "object"]),
        httpx.Response(200, json={"requestId": "R", "code": "Success"}),  # lower-case keys
        httpx.Response(200, content=b"\xff\xfe garbage"),
    ],
    ids=["502-html", "truncated", "empty", "array", "lowercase", "binary"],
)
def test_unparsable_replies_are_transient(reply: httpx.Response) -> None:
    script = Script(reply)
    with make_client(script, max_attempts=2) as client, pytest.raises(TransientError) as info:
        check(client)
    assert info.value.code == "MalformedResponse"
    assert info.value.maybe_processed
    assert len(script.requests) == 2  # CheckResult is a read: retried


def test_http_200_with_error_code_raises_classified() -> None:
    body = {"RequestId": "R200", "Code": "ProcessNotCompleted", "Message": "not done"}
    script = Script(httpx.Response(200, json=body))
    with make_client(script) as client, pytest.raises(NotReadyError) as info:
        check(client)
    assert (info.value.status, info.value.request_id) == (200, "R200")
    assert len(script.requests) == 1


def test_http_200_with_numeric_business_code_is_permanent() -> None:
    script = Script(httpx.Response(200, json={"Code": "401", "Message": "Parameter error"}))
    with make_client(script) as client, pytest.raises(PermanentError) as info:
        check(client)
    assert info.value.code == "401"
    assert str(info.value) == "401: Parameter error (HTTP 200, request -)"


def test_request_id_falls_back_to_header() -> None:
    reply = httpx.Response(500, json={"Code": "InternalError"}, headers={"x-acs-request-id": "HDR"})
    script = Script(reply)
    with make_client(script, max_attempts=1) as client, pytest.raises(TransientError) as info:
        check(client)
    assert info.value.request_id == "HDR"
    assert not info.value.maybe_processed


def test_success_without_request_id_takes_the_header() -> None:
    reply = httpx.Response(
        200, json={"Code": "Success", "Result": {}}, headers={"x-acs-request-id": "HDR-9"}
    )
    with make_client(Script(reply)) as client:
        assert check(client).request_id == "HDR-9"


def test_error_messages_hold_no_echoed_parameters_or_urls() -> None:
    message = (
        "The request signature does not conform to Aliyun standards. server string to sign is:"
        "POST&%2F&MerchantUserId%3Djohn.doe%40mail.example"
    )
    reply = httpx.Response(
        400,
        json={
            "Code": "IncompleteSignature",
            "Message": message,
            "Recommend": "https://api.aliyun.com/troubleshoot?q=IncompleteSignature",
        },
    )
    script = Script(reply)
    with make_client(script) as client, pytest.raises(CredentialsError) as info:
        check(client)
    text = str(info.value) + repr(info.value.to_dict())
    assert "john.doe" not in text
    assert SECRET not in text
    assert "string to sign <elided>" in info.value.message


# --- validation happens before any request ------------------------------------------------


def test_validation_errors_never_send() -> None:
    def explode(request: httpx.Request) -> httpx.Response:
        raise AssertionError("a request was sent")

    gate = RecordingGate()
    client = CloudAuthClient(make_settings(), gate=gate, transport=httpx.MockTransport(explode))
    calls: list[Callable[[], object]] = [
        lambda: client.check_result(transaction_id="", merchant_biz_id="b", product_code="eKYC"),
        lambda: client.check_result(transaction_id="t", merchant_biz_id="b-1", product_code="eKYC"),
        lambda: client.doc_ocr_v2(
            merchant_biz_id="b", merchant_user_id="u", doc_type="00000006", image_base64="@@"
        ),
        lambda: client.doc_ocr_v2(
            merchant_biz_id="b",
            merchant_user_id="u",
            doc_type="00000006",
            image_url="https://x/a.jpg",
            image_base64=jpeg_b64(),
        ),
        lambda: client.initialize(
            product_code="eKYC", merchant_biz_id="b", merchant_user_id="u", meta_info="[1]"
        ),
    ]
    with client:
        for call in calls:
            with pytest.raises(RequestValidationError):
                call()
    assert gate.events == []


def test_both_images_error_names_both_fields() -> None:
    with make_client(Script(ok())) as client, pytest.raises(RequestValidationError) as info:
        client.doc_ocr_v2(
            merchant_biz_id="b",
            merchant_user_id="u",
            doc_type="00000006",
            image_url="https://x/a.jpg",
            image_base64=jpeg_b64(),
        )
    assert info.value.field == "IdOcrPictureBase64/IdOcrPictureUrl"
    assert info.value.python_name == "image_base64/image_url"
    assert isinstance(info.value, ValueError)


def test_max_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        CloudAuthClient(make_settings(), max_attempts=0)


def test_unknown_result_fields_survive_parsing() -> None:
    body = json.loads(json.dumps(OK_CHECK))
    body["Result"]["BrandNewField"] = {"x": 1}
    with make_client(Script(ok(body))) as client:
        result = check(client)
    assert result.model_extra == {"BrandNewField": {"x": 1}}
    assert result.raw["BrandNewField"] == {"x": 1}


def test_credentials_never_show_the_secret() -> None:
    creds = Credentials("AKID", SECRET, "sts-token-1")
    assert SECRET not in repr(creds)
    assert "sts-token-1" not in repr(creds)
    assert creds.provider_name == "static_sts"
