"""Provider-shaped errors (spec §6.2, §6.3): status, code and message of each error answered.

``ApiError`` carries its data; ``error_body`` renders the gateway's JSON error shape.
"""

from __future__ import annotations

import json

PRODUCT = "Cloudauth-intl"

# code -> (HTTP status, message); messages follow the provider's and the gateway's texts.
CATALOGUE: dict[str, tuple[int, str]] = {
    "MissingParameter": (400, "Parameter cannot be empty."),
    "InvalidParameter": (400, "Invalid parameter."),
    "TransactionIdInvalid": (400, "Invalid Transaction ID."),
    "InvalidVersion": (400, "Specified parameter Version is not valid."),
    "IncompleteSignature": (400, "The request signature does not conform to Aliyun standards."),
    "SignatureDoesNotMatch": (400, "Specified signature does not match our calculation."),
    "InvalidTimeStamp.Expired": (400, "Specified time stamp or date value is expired."),
    "InvalidTimeStamp.Format": (400, "Specified time stamp or date value is not well formatted."),
    "SignatureNonceUsed": (400, "Specified signature nonce was used already."),
    "InvalidAccessKeyId.NotFound": (404, "Specified access key is not found."),
    "UnqualifiedPhoto": (
        401,
        "The uploaded image is unreadable or does not meet the resolution requirements.",
    ),
    "DataDuplication": (401, "The image is passed both as Base64 and as a URL."),
    "ToolargeImage": (401, "The image is too large."),
    "DownloadTimeout": (401, "Downloading the image from the URL timed out."),
    "Forbidden.RAMUserAccessDenied": (
        403,
        "You need to grant the RAM user the AliyunAntCloudAuthFullAccess permission.",
    ),
    "Forbidden.AccountAccessDenied": (
        403,
        "Ensure that you have activated ID verification and your account has no overdue payment.",
    ),
    "Forbidden.ExceptionRepeatedInvoke": (401, "Too many repeated exception calls."),
    "Throttling.Api": (403, "Request was denied due to api flow control."),
    "Throttling.User": (400, "Request was denied due to user flow control."),
    "InvalidAction.NotFound": (
        404,
        "Specified api is not found, please check your url and method.",
    ),
    "ProcessNotCompleted": (404, "The entire authentication process is not completed."),
    "InternalError": (
        500,
        "The request processing has failed due to some unknown error, exception or failure.",
    ),
    "ServiceUnavailable": (503, "The request has failed due to a temporary failure of the server."),
}


class ApiError(Exception):
    """An error answered to a provider API call; ``status``/``code``/``message`` go on the wire."""

    def __init__(self, code: str, message: str | None = None, status: int | None = None) -> None:
        default_status, default_message = CATALOGUE.get(code, (400, code))
        self.code = code
        self.status = status if status is not None else default_status
        self.message = message if message is not None else default_message
        super().__init__(f"{self.status} {code}: {self.message}")


def missing(name: str) -> ApiError:
    """``MissingParameter`` naming the parameter, in the gateway's wording."""
    return ApiError(
        "MissingParameter",
        f'The input parameter "{name}" that is mandatory for processing this request '
        "is not supplied.",
    )


def invalid(name: str, why: str = "") -> ApiError:
    """``InvalidParameter`` naming the parameter (``why`` never carries the value itself)."""
    suffix = f" {why}" if why else ""
    return ApiError("InvalidParameter", f'The specified parameter "{name}" is not valid.{suffix}')


def error_body(error: ApiError, request_id: str, host_id: str) -> bytes:
    """The gateway's JSON error body (spec §6.2)."""
    recommend = (
        f"https://api.alibabacloud.com/troubleshoot?q={error.code}"
        f"&product={PRODUCT}&requestId={request_id}"
    )
    return json.dumps(
        {
            "RequestId": request_id,
            "HostId": host_id,
            "Code": error.code,
            "Message": error.message,
            "Recommend": recommend,
        },
        separators=(",", ":"),
    ).encode()
