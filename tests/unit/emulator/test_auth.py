"""Server-side signature verification against verbatim official-SDK requests (spec captures)."""

from __future__ import annotations

import calendar
import time
from urllib.parse import parse_qsl

import pytest

from worker.emulator.auth import Authenticator, IncomingRequest, NonceCache, parse_timestamp
from worker.emulator.errors import ApiError

KEYS = {"testAccessKeyId": "testAccessKeySecret"}
CAPTURE_TIME = float(calendar.timegm(time.strptime("2026-11-22T02:37:30Z", "%Y-%m-%dT%H:%M:%SZ")))

# Capture 1 of spec/sdk-captures.txt: CheckResult, ACS3, no body.
CHECK_RESULT = (
    "POST /?IsReturnImage=Y&MerchantBizId=e0c34a77f5ac40a5aa5e6ed20c35%2A%2A%2A%2A"
    "&TransactionId=hksb7ba1b28130d24e015d6%2A%2A%2A%2A%2A%2A%2A%2A HTTP/1.1\r\n"
    "Accept-Encoding: identity\r\n"
    "host: 127.0.0.1:45255\r\n"
    "x-acs-version: 2022-08-09\r\n"
    "x-acs-action: CheckResult\r\n"
    "user-agent: AlibabaCloud (Linux; x86_64) Python/3.11.7 Core/0.4.3 TeaDSL/2\r\n"
    "x-acs-date: 2026-11-22T02:37:30Z\r\n"
    "x-acs-signature-nonce: 0e37eef622f304ccebf9065ddde7e10e\r\n"
    "accept: application/json\r\n"
    "x-acs-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\r\n"
    "x-acs-credentials-provider: static_ak\r\n"
    "Authorization: ACS3-HMAC-SHA256 Credential=testAccessKeyId,SignedHeaders=accept;host;"
    "user-agent;x-acs-action;x-acs-content-sha256;x-acs-credentials-provider;x-acs-date;"
    "x-acs-signature-nonce;x-acs-version,"
    "Signature=c082a85a695f6d6f8b64650e9478816e57c5dcb7dfd2c81686e4f387c90af792\r\n"
    "Content-Length: 0\r\n"
    "\r\n"
)
# Capture 2: DocOcrV2 with a form body (space as "+" on the wire, "%20" when signed).
DOC_OCR = (
    "POST /?CardSide=OCR_ID_FACE&DocType=00000006&IdFaceQuality=T&IdThreshold=0"
    "&MerchantBizId=e0c34a77f5ac40a5aa5e6ed20c35%2A%2A%2A%2A&MerchantUserId=user+123%2Babc"
    "&Ocr=T&ProductCode=ID_OCR_MIN&Spoof=T HTTP/1.1\r\n"
    "Accept-Encoding: identity\r\n"
    "host: 127.0.0.1:45255\r\n"
    "x-acs-version: 2022-08-09\r\n"
    "x-acs-action: DocOcrV2\r\n"
    "user-agent: AlibabaCloud (Linux; x86_64) Python/3.11.7 Core/0.4.3 TeaDSL/2\r\n"
    "x-acs-date: 2026-11-22T02:37:30Z\r\n"
    "x-acs-signature-nonce: a9cba3cdc17a92690b99ae424a4200a7\r\n"
    "accept: application/json\r\n"
    "content-type: application/x-www-form-urlencoded\r\n"
    "x-acs-content-sha256: 01ff103caca5eae4eda9c2e7e5f410d8b169bf472a147be17397c01f9564b741\r\n"
    "x-acs-credentials-provider: static_ak\r\n"
    "Authorization: ACS3-HMAC-SHA256 Credential=testAccessKeyId,SignedHeaders=accept;"
    "content-type;host;user-agent;x-acs-action;x-acs-content-sha256;x-acs-credentials-provider;"
    "x-acs-date;x-acs-signature-nonce;x-acs-version,"
    "Signature=1cf2b3cbca19cf4ae833744a1654e001be301aefbc8321907c9f677a6eeb480c\r\n"
    "Content-Length: 51\r\n"
    "\r\n"
    "IdOcrPictureBase64=%2Bvv8%2Ff7%2F%2B%2F8%2BP2hlbGxv"
)
# Capture 7: DocOcrV2 with the legacy RPC HMAC-SHA1 signature (body params are signed too).
DOC_OCR_RPC = (
    "POST /?Action=DocOcrV2&Format=json&Version=2022-08-09&Timestamp=2026-11-22T02%3A37%3A30Z"
    "&SignatureNonce=2da8dc2775a985c29bd64886feb9dc79&DocType=00000006&MerchantBizId=b1"
    "&MerchantUserId=u+1&Ocr=T&ProductCode=ID_OCR_MIN&SignatureMethod=HMAC-SHA1"
    "&SignatureVersion=1.0&AccessKeyId=testAccessKeyId"
    "&Signature=ETY3nEUfCy%2B%2BO7%2BekCG%2FxjVNxr0%3D HTTP/1.1\r\n"
    "Accept-Encoding: identity\r\n"
    "host: 127.0.0.1:45255\r\n"
    "x-acs-version: 2022-08-09\r\n"
    "x-acs-action: DocOcrV2\r\n"
    "user-agent: AlibabaCloud (Linux; x86_64) Python/3.11.7 Core/0.4.3 TeaDSL/2\r\n"
    "content-type: application/x-www-form-urlencoded\r\n"
    "x-acs-credentials-provider: static_ak\r\n"
    "Content-Length: 51\r\n"
    "\r\n"
    "IdOcrPictureBase64=%2Bvv8%2Ff7%2F%2B%2F8%2BP2hlbGxv"
)


def parse_raw(raw: str) -> IncomingRequest:
    """An ``IncomingRequest`` from raw HTTP/1.1 text, as the emulator's ASGI layer builds it."""
    head, _, body = raw.partition("\r\n\r\n")
    request_line, *header_lines = head.split("\r\n")
    method, target, _ = request_line.split(" ")
    path, _, query = target.partition("?")
    headers = []
    for line in header_lines:
        name, _, value = line.partition(":")
        headers.append((name.strip().lower(), value.strip()))
    body_bytes = body.encode()
    return IncomingRequest(
        method=method,
        path=path,
        query=parse_qsl(query, keep_blank_values=True),
        headers=headers,
        body=body_bytes,
        body_params=parse_qsl(body, keep_blank_values=True),
    )


def authenticator(now: float = CAPTURE_TIME) -> Authenticator:
    return Authenticator(KEYS, 900, NonceCache(900, now=lambda: now), now=lambda: now)


def verify_code(raw: str | IncomingRequest, auth: Authenticator | None = None) -> str:
    request = parse_raw(raw) if isinstance(raw, str) else raw
    try:
        (auth or authenticator()).verify(request)
    except ApiError as exc:
        return exc.code
    return "ok"


@pytest.mark.parametrize("raw", [CHECK_RESULT, DOC_OCR, DOC_OCR_RPC])
def test_official_sdk_requests_verify(raw: str) -> None:
    assert authenticator().verify(parse_raw(raw)) == "testAccessKeyId"


@pytest.mark.parametrize(
    ("raw", "old", "new"),
    [
        (CHECK_RESULT, "IsReturnImage=Y", "IsReturnImage=N"),
        (CHECK_RESULT, "x-acs-action: CheckResult", "x-acs-action: DocOcrV2"),
        (CHECK_RESULT, "user-agent: AlibabaCloud", "user-agent: Tampered"),
        (CHECK_RESULT, "Signature=c082a85a", "Signature=c082a85b"),
        (DOC_OCR, "MerchantUserId=user+123%2Babc", "MerchantUserId=user+124%2Babc"),
        (DOC_OCR_RPC, "MerchantBizId=b1", "MerchantBizId=b2"),
        (DOC_OCR_RPC, "Signature=ETY3", "Signature=FTY3"),
    ],
)
def test_tampered_requests_are_rejected(raw: str, old: str, new: str) -> None:
    assert old in raw
    assert verify_code(raw.replace(old, new)) == "SignatureDoesNotMatch"


def test_tampered_body_fails_the_content_hash() -> None:
    tampered = DOC_OCR.replace("P2hlbGxv", "P2hlbGxw")
    assert verify_code(tampered) == "SignatureDoesNotMatch"
    # The RPC scheme signs body parameters, so a changed body fails there too.
    assert verify_code(DOC_OCR_RPC.replace("P2hlbGxv", "P2hlbGxw")) == "SignatureDoesNotMatch"


def test_unknown_access_key() -> None:
    auth = Authenticator({"other": "secret"}, 900, now=lambda: CAPTURE_TIME)
    assert verify_code(CHECK_RESULT, auth) == "InvalidAccessKeyId.NotFound"
    assert verify_code(DOC_OCR_RPC, auth) == "InvalidAccessKeyId.NotFound"


def test_date_window_is_fifteen_minutes() -> None:
    assert verify_code(CHECK_RESULT, authenticator(CAPTURE_TIME + 899)) == "ok"
    assert verify_code(CHECK_RESULT, authenticator(CAPTURE_TIME + 901)) == (
        "InvalidTimeStamp.Expired"
    )
    assert verify_code(CHECK_RESULT, authenticator(CAPTURE_TIME - 901)) == (
        "InvalidTimeStamp.Expired"
    )
    assert verify_code(DOC_OCR_RPC, authenticator(CAPTURE_TIME + 3600)) == (
        "InvalidTimeStamp.Expired"
    )


def test_bad_date_format() -> None:
    raw = CHECK_RESULT.replace("x-acs-date: 2026-11-22T02:37:30Z", "x-acs-date: 2026-11-22 02:37")
    assert verify_code(raw) == "InvalidTimeStamp.Format"
    with pytest.raises(ApiError):
        parse_timestamp("2026-13-22T02:37:30Z")


def test_nonce_replay() -> None:
    auth = authenticator()
    assert verify_code(CHECK_RESULT, auth) == "ok"
    assert verify_code(CHECK_RESULT, auth) == "SignatureNonceUsed"
    assert verify_code(DOC_OCR_RPC, auth) == "ok"
    assert verify_code(DOC_OCR_RPC, auth) == "SignatureNonceUsed"


def test_failed_signature_does_not_burn_the_nonce() -> None:
    auth = authenticator()
    assert verify_code(CHECK_RESULT.replace("Signature=c0", "Signature=d0"), auth) != "ok"
    assert verify_code(CHECK_RESULT, auth) == "ok"


def test_nonce_cache_expires_entries() -> None:
    clock = [0.0]
    cache = NonceCache(10, now=lambda: clock[0])
    assert cache.check_and_add("n1")
    assert not cache.check_and_add("n1")
    clock[0] = 10.5
    assert cache.check_and_add("n1")
    assert len(cache) == 1


def test_required_signed_headers() -> None:
    raw = CHECK_RESULT.replace(
        "x-acs-credentials-provider;x-acs-date;", "x-acs-credentials-provider;"
    )
    assert verify_code(raw) == "IncompleteSignature"
    # A body must have its content-type signed.
    raw = DOC_OCR.replace("SignedHeaders=accept;content-type;", "SignedHeaders=accept;")
    assert verify_code(raw) == "IncompleteSignature"


def test_declared_header_missing_from_request() -> None:
    raw = CHECK_RESULT.replace("x-acs-credentials-provider: static_ak\r\n", "")
    assert verify_code(raw) == "IncompleteSignature"


def test_missing_or_malformed_authorization() -> None:
    start = CHECK_RESULT.index("Authorization:")
    end = CHECK_RESULT.index("\r\n", start) + 2
    assert verify_code(CHECK_RESULT[:start] + CHECK_RESULT[end:]) == "IncompleteSignature"
    assert verify_code(CHECK_RESULT.replace("ACS3-HMAC-SHA256 Cred", "HMAC Cred")) == (
        "IncompleteSignature"
    )
    unsigned = "POST /?Action=CheckResult HTTP/1.1\r\nhost: h\r\n\r\n"
    assert verify_code(unsigned) == "MissingParameter"
    rpc = DOC_OCR_RPC.replace("&SignatureNonce=2da8dc2775a985c29bd64886feb9dc79", "")
    assert verify_code(rpc) == "MissingParameter"
