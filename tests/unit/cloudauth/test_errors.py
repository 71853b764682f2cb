"""Error taxonomy: every documented code (spec §6.3) lands in the right class."""

from __future__ import annotations

import pickle

import pytest

from worker.cloudauth.errors import (
    AccountError,
    CloudAuthError,
    CredentialsError,
    NotReadyError,
    PermanentError,
    RequestValidationError,
    ThrottledError,
    TransactionInvalidError,
    TransientError,
    classify_response,
    parse_retry_after,
    sanitize_message,
)

# (HTTP status, Code, expected class): the ID Verification table, then the gateway's codes.
DOCUMENTED = [
    (400, "MissingParameter", PermanentError),
    (400, "InvalidParameter", PermanentError),
    (400, "TransactionIdInvalid", TransactionInvalidError),
    (401, "Forbidden.ExceptionRepeatedInvoke", PermanentError),
    (401, "UnqualifiedPhoto", PermanentError),
    (401, "DataDuplication", PermanentError),
    (401, "ToolargeImage", PermanentError),
    (401, "DownloadTimeout", PermanentError),
    (401, "NoFaceDetected", PermanentError),
    (403, "Forbidden.RAMUserAccessDenied", AccountError),
    (403, "Forbidden.AccountAccessDenied", AccountError),
    (403, "Throttling.Api", ThrottledError),
    (404, "ProcessNotCompleted", NotReadyError),
    (429, "SuspiciousActivity", PermanentError),
    (500, "InternalError", TransientError),
    (503, "ServiceUnavailable", TransientError),
    (404, "InvalidAccessKeyId.NotFound", CredentialsError),
    (400, "InvalidAccessKeyId.Inactive", CredentialsError),
    (400, "SignatureDoesNotMatch", CredentialsError),
    (403, "SignatureDoesNotMatch", CredentialsError),
    (400, "IncompleteSignature", CredentialsError),
    (400, "InvalidTimeStamp.Expired", CredentialsError),
    (400, "InvalidTimeStamp.Format", CredentialsError),
    (400, "SignatureNonceUsed", CredentialsError),
    (404, "InvalidApi.NotFound", PermanentError),
    (404, "InvalidAction.NotFound", PermanentError),
    (400, "Throttling.User", ThrottledError),
    (400, "Throttling", ThrottledError),
    (200, "ProcessNotCompleted", NotReadyError),
    (200, "Throttling.Api", ThrottledError),
]


def reply(status: int, code: str, **headers: str) -> CloudAuthError:
    body = {"RequestId": "RID", "Code": code, "Message": "m", "Recommend": "https://r"}
    return classify_response(action="CheckResult", status=status, body=body, headers=headers)


@pytest.mark.parametrize(("status", "code", "cls"), DOCUMENTED)
def test_documented_codes(status: int, code: str, cls: type[CloudAuthError]) -> None:
    error = reply(status, code)
    assert type(error) is cls
    assert (error.status, error.code, error.request_id, error.action) == (
        status,
        code,
        "RID",
        "CheckResult",
    )
    assert error.recommend == "https://r"


def test_every_spec_table_code_is_covered() -> None:
    table = {
        "MissingParameter", "InvalidParameter", "TransactionIdInvalid",
        "Forbidden.ExceptionRepeatedInvoke", "UnqualifiedPhoto", "DataDuplication",
        "ToolargeImage", "DownloadTimeout", "NoFaceDetected", "Forbidden.RAMUserAccessDenied",
        "Forbidden.AccountAccessDenied", "Throttling.Api", "ProcessNotCompleted",
        "SuspiciousActivity", "InternalError", "ServiceUnavailable",
    }  # fmt: skip
    assert table <= {code for _, code, _ in DOCUMENTED}


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (500, "Something.New", TransientError),
        (502, "", TransientError),
        (418, "Something.New", PermanentError),
        (404, "Nope", PermanentError),
        (429, "Whatever", ThrottledError),
        (403, "Forbidden.SomethingElse", AccountError),
        (200, "401", PermanentError),
        (200, "503", TransientError),
        (200, "Weird", PermanentError),
    ],
)
def test_unknown_codes_follow_the_status(status: int, code: str, cls: type[CloudAuthError]) -> None:
    assert type(reply(status, code)) is cls


def test_retry_after_header_means_throttled_whatever_the_code() -> None:
    error = reply(400, "InvalidParameter", **{"x-acs-retry-after": "250"})
    assert isinstance(error, ThrottledError)
    assert error.retry_after == 0.25


@pytest.mark.parametrize(
    ("raw", "expected"), [("1000", 1.0), (" 20 ", 0.02), ("0", None), ("-5", None), ("x", None)]
)
def test_parse_retry_after(raw: str, expected: float | None) -> None:
    assert parse_retry_after({"x-acs-retry-after": raw}) == expected
    assert parse_retry_after({}) is None


def test_non_json_bodies() -> None:
    e5 = classify_response(action="A", status=502, body=None, headers={"x-acs-request-id": "H"})
    assert isinstance(e5, TransientError)
    assert e5.maybe_processed
    assert e5.request_id == "H"
    e4 = classify_response(action="A", status=404, body=None, headers={})
    assert isinstance(e4, PermanentError)
    assert e4.code == "HTTP404"
    e429 = classify_response(action="A", status=429, body=None, headers={})
    assert isinstance(e429, ThrottledError)
    e200 = classify_response(action="A", status=200, body=None, headers={})
    assert isinstance(e200, TransientError)
    assert e200.code == "MalformedResponse"


def test_explicit_server_error_reply_was_not_processed() -> None:
    error = reply(500, "InternalError")
    assert isinstance(error, TransientError)
    assert not error.maybe_processed


def test_lowercase_error_keys_are_read() -> None:
    body = {"requestId": "r1", "code": "Throttling.Api", "message": "slow down"}
    error = classify_response(action="A", status=403, body=body, headers={})
    assert isinstance(error, ThrottledError)
    assert (error.request_id, error.message) == ("r1", "slow down")


def test_retryability_flags() -> None:
    assert ThrottledError.retryable
    assert TransientError.retryable
    assert NotReadyError.retryable
    assert not PermanentError.retryable
    assert not TransactionInvalidError.retryable
    assert not AccountError.retryable
    assert not CredentialsError.retryable
    assert not RequestValidationError.retryable
    assert AccountError.stops_lane
    assert CredentialsError.stops_lane
    assert not PermanentError.stops_lane
    assert not ThrottledError.stops_lane
    nonce = reply(400, "SignatureNonceUsed")
    mismatch = reply(400, "SignatureDoesNotMatch")
    assert isinstance(nonce, CredentialsError)
    assert nonce.resign_may_help
    assert isinstance(mismatch, CredentialsError)
    assert not mismatch.resign_may_help


def test_str_format() -> None:
    assert str(reply(403, "Throttling.Api")) == "Throttling.Api: m (HTTP 403, request RID)"
    none = TransientError("ReadTimeout", action="A", code="HttpTimeout")
    assert str(none) == "HttpTimeout: ReadTimeout (no HTTP reply, request -)"


@pytest.mark.parametrize(
    "error",
    [
        reply(403, "Throttling.Api", **{"x-acs-retry-after": "100"}),
        reply(503, "ServiceUnavailable"),
        reply(400, "TransactionIdInvalid"),
        reply(400, "SignatureNonceUsed"),
        TransientError("x", action="A", code="HttpTimeout", maybe_processed=True),
        RequestValidationError("MerchantBizId", "bad", python_name="merchant_biz_id", action="A"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_pickle_with_their_data(error: CloudAuthError) -> None:
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert type(copy) is type(error)
    assert copy.to_dict() == error.to_dict()
    assert str(copy) == str(error)


def test_validation_error_is_a_value_error_naming_the_field() -> None:
    error = RequestValidationError("MerchantBizId", "must be short", python_name="merchant_biz_id")
    assert isinstance(error, ValueError)
    assert isinstance(error, CloudAuthError)
    assert str(error) == "MerchantBizId (merchant_biz_id): must be short"
    assert error.to_dict()["field"] == "MerchantBizId"


def test_sanitize_message() -> None:
    assert sanitize_message(None) == ""
    assert sanitize_message("see https://bucket.oss/x.webm?Signature=abc now") == "see <url> now"
    echoed = "bad. The string to sign is: POST&%2F&Name%3DAlice"
    assert "Alice" not in sanitize_message(echoed)
    long = sanitize_message("x" * 1000)
    assert len(long) == 200
