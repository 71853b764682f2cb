"""Errors raised by the cloudauth client, classified so tasks can decide what to do.

The hierarchy::

    CloudAuthError                      every provider/transport failure; carries action, status,
     │                                  code, message, request_id, recommend (never secrets/PII)
     ├── RequestValidationError         (also ValueError) bad argument, raised before any request
     ├── ThrottledError                 Throttling*, or any reply with x-acs-retry-after
     ├── NotReadyError                  ProcessNotCompleted: the user's flow has not finished yet
     ├── TransientError                 5xx, InternalError, ServiceUnavailable, timeouts, connection
     │    │                             errors
     │    └── MalformedResponse         non-JSON / truncated / oversized / too deep bodies, and
     │                                  success replies that do not match the models (``field``)
     ├── PermanentError                 4xx parameter and photo errors: fix the input, do not retry
     │    └── TransactionInvalidError   TransactionIdInvalid
     └── AccountError                   Forbidden.RAMUserAccessDenied / AccountAccessDenied: stop
          │                             the lane and alert
          └── CredentialsError          gateway authentication: InvalidAccessKeyId.*,
                                        SignatureDoesNotMatch, IncompleteSignature,
                                        InvalidTimeStamp.*, SignatureNonceUsed

Every error is an ``worker.errors.IdvError``: ``retryable`` says whether the *task* may try the
same call again later, ``retry_after`` when (throttling), ``stops_lane`` / ``alert`` for account
errors.
The client itself retries only ``ThrottledError`` and ``TransientError`` (and, once, the
credential codes that a fresh date/nonce can cure); everything else is for the task to decide.

``TransientError.maybe_processed`` is true when the request reached the provider but no usable
answer came back (read timeout, broken or unparsable body, non-JSON 5xx from a proxy). Whether
that makes the error non-retryable depends on the action: an idempotent call (CheckResult,
Initialize) is retried until its deadline, while for a billed call (DocOcrV2, and any action
not known to be repeatable) the provider may have processed - and billed - it, so neither the
client nor the task repeats it (``retryable`` is False) without a decision.

Use ``classify_response`` to build the right error from a provider reply.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from worker.cloudauth.placement import is_repeatable
from worker.errors import IdvError

# Codes whose class is fixed regardless of the HTTP status they arrive with (spec §6.3).
_NOT_READY_CODES = frozenset({"ProcessNotCompleted"})
_TRANSIENT_CODES = frozenset({"InternalError", "ServiceUnavailable", "ServiceTimeout"})
_PERMANENT_CODES = frozenset(
    {
        "MissingParameter",
        "InvalidParameter",
        "UnqualifiedPhoto",
        "DataDuplication",
        "ToolargeImage",
        "DownloadTimeout",
        "NoFaceDetected",
        # Repeating a call that keeps failing only extends the block: fix the input instead.
        "Forbidden.ExceptionRepeatedInvoke",
        # Device-assistant APIs only (spec §6.3); not a quota the limiter can pace.
        "SuspiciousActivity",
        "InvalidApi.NotFound",
        "InvalidAction.NotFound",
        "InvalidVersion",
    }
)
_TRANSACTION_INVALID_CODES = frozenset({"TransactionIdInvalid"})
_ACCOUNT_CODES = frozenset({"Forbidden.RAMUserAccessDenied", "Forbidden.AccountAccessDenied"})
_CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId.NotFound",
        "InvalidAccessKeyId.Inactive",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "InvalidTimeStamp.Expired",
        "InvalidTimeStamp.Format",
        "SignatureNonceUsed",
        "InvalidSecurityToken.Expired",
        "InvalidSecurityToken.Malformed",
        "InvalidSecurityToken.MismatchWithAccessKey",
    }
)
# A replay-cache hit or a date outside the 15-minute window is cured by re-signing with a fresh
# nonce and date; a wrong secret or a malformed date is not.
RESIGN_CODES = frozenset({"SignatureNonceUsed", "InvalidTimeStamp.Expired"})

_MAX_MESSAGE = 200
_URL_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://\S+")
# The gateway echoes its string-to-sign on signature errors; it holds every parameter value.
_ECHO_RE = re.compile(r"(string to sign|canonical ?request)\b.*", re.IGNORECASE | re.DOTALL)


def sanitize_message(message: str | None) -> str:
    """Provider message with echoed request data and URLs removed, capped in length."""
    if not message:
        return ""
    text = _ECHO_RE.sub(r"\1 <elided>", str(message))
    text = _URL_RE.sub("<url>", text)
    text = " ".join(text.split())
    if len(text) > _MAX_MESSAGE:
        text = text[: _MAX_MESSAGE - 1] + "…"
    return text


class CloudAuthError(IdvError):
    """Base of every error the client raises (provider replies and transport failures).

    Attributes carry data for tasks and logs: ``action`` (API name), ``status`` (HTTP status or
    None when no reply), ``code`` (provider code, or a synthetic one such as ``HttpTimeout``),
    ``message`` (sanitised), ``request_id`` and ``recommend`` (provider troubleshooting link).
    """

    retryable = False
    """Whether the task may repeat the same call later (the client has already retried)."""

    def __init__(
        self,
        message: str = "",
        *,
        action: str = "",
        status: int | None = None,
        code: str = "",
        request_id: str | None = None,
        recommend: str | None = None,
    ) -> None:
        self.action = action
        self.status = status
        self.code = code
        self.message = sanitize_message(message)
        self.request_id = request_id
        self.recommend = recommend
        super().__init__(self._text())

    def _text(self) -> str:
        status = f"HTTP {self.status}" if self.status is not None else "no HTTP reply"
        head = f"{self.code}: {self.message}" if self.code else self.message
        return f"{head} ({status}, request {self.request_id or '-'})"

    def _state(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "action": self.action,
            "status": self.status,
            "code": self.code,
            "request_id": self.request_id,
            "recommend": self.recommend,
        }

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructors do not survive the default pickling (Celery, multiprocessing).
        return (_rebuild, (type(self), self._state()))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able record of the error for dead-letter records and logs (no PII)."""
        return {"type": type(self).__name__, "retryable": self.retryable, **self._state()}


def _rebuild(cls: type[CloudAuthError], state: dict[str, Any]) -> CloudAuthError:
    return cls(**state)


class RequestValidationError(CloudAuthError, ValueError):
    """An argument was rejected before any request was sent.

    ``field`` is the wire name (``MerchantBizId``), ``python_name`` the argument
    (``merchant_biz_id``) and ``reason`` what is wrong; the value itself is never included.
    """

    def __init__(
        self,
        field: str,
        reason: str,
        *,
        python_name: str = "",
        action: str = "",
        message: str = "",
        status: int | None = None,
        code: str = "",
        request_id: str | None = None,
        recommend: str | None = None,
    ) -> None:
        self.field = field
        self.python_name = python_name
        self.reason = reason
        label = f"{field} ({python_name})" if python_name and python_name != field else field
        super().__init__(
            message or f"{label}: {reason}",
            action=action,
            code=code or "InvalidArgument",
            status=status,
            request_id=request_id,
            recommend=recommend,
        )

    def _text(self) -> str:
        return self.message

    def _state(self) -> dict[str, Any]:
        return {
            **super()._state(),
            "field": self.field,
            "reason": self.reason,
            "python_name": self.python_name,
        }


class ThrottledError(CloudAuthError):
    """The quota was exceeded (``Throttling.*``); ``retry_after`` in seconds when the reply said."""

    retryable = True

    def __init__(self, message: str = "", *, retry_after: float | None = None, **kw: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "retry_after": self.retry_after}


class NotReadyError(CloudAuthError):
    """``ProcessNotCompleted``: the verification flow is not finished; ask again later."""

    retryable = True


class TransientError(CloudAuthError):
    """A failure that may pass: 5xx, timeouts, connection errors, malformed replies.

    ``maybe_processed`` is true when the request may have been executed although no usable reply
    arrived. ``billed`` says whether repeating the action could bill it twice (default: every
    action but the repeatable ones of ``placement.REPEATABLE_ACTIONS``). Only a billed call that
    may have been processed is held back (``retryable`` False); any other transient failure is
    retried until the work's deadline.
    """

    retryable = True

    def __init__(
        self,
        message: str = "",
        *,
        maybe_processed: bool = False,
        billed: bool | None = None,
        **kw: Any,
    ) -> None:
        self.maybe_processed = maybe_processed
        self.billed = not is_repeatable(str(kw.get("action") or "")) if billed is None else billed
        # The provider may have processed (and billed) the call: never repeat it blindly.
        self.retryable = not (maybe_processed and self.billed)
        super().__init__(message, **kw)

    def _state(self) -> dict[str, Any]:
        return {
            **super()._state(),
            "maybe_processed": self.maybe_processed,
            "billed": self.billed,
        }


class MalformedResponse(TransientError):
    """A reply that is not a usable answer: not JSON, truncated, too large, nested too deep, or a
    success whose ``Result`` does not match the model (``field`` names the first bad field).

    The provider answered, so the call may have been processed (``maybe_processed``): retried
    for an idempotent action, held back for a billed one.
    """

    def __init__(
        self,
        message: str = "",
        *,
        field: str = "",
        maybe_processed: bool = True,
        **kw: Any,
    ) -> None:
        self.field = field
        kw.setdefault("code", "MalformedResponse")
        super().__init__(message, maybe_processed=maybe_processed, **kw)

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "field": self.field}


class PermanentError(CloudAuthError):
    """The request itself is wrong (parameters, photo): the same call will fail again."""


class TransactionInvalidError(PermanentError):
    """``TransactionIdInvalid``: unknown, foreign or expired (30-day retention) transaction."""


class AccountError(CloudAuthError):
    """The account cannot call the API (permissions, activation, arrears): stop the lane."""

    stops_lane = True
    alert = True


class CredentialsError(AccountError):
    """The gateway rejected our credentials or signature.

    ``resign_may_help`` marks the codes a fresh date/nonce can cure (``SignatureNonceUsed``,
    ``InvalidTimeStamp.Expired``); the client has retried those once before raising.
    """

    @property
    def resign_may_help(self) -> bool:
        return self.code in RESIGN_CODES


def _error_class(code: str, status: int) -> type[CloudAuthError]:
    if code.startswith("Throttling"):
        return ThrottledError
    if code in _NOT_READY_CODES:
        return NotReadyError
    if code in _TRANSIENT_CODES:
        return TransientError
    if code in _TRANSACTION_INVALID_CODES:
        return TransactionInvalidError
    if code in _PERMANENT_CODES:
        return PermanentError
    if code in _ACCOUNT_CODES:
        return AccountError
    if code in _CREDENTIAL_CODES or code.startswith(("InvalidAccessKeyId", "InvalidSecurityToken")):
        return CredentialsError
    if code.startswith("Forbidden"):
        return AccountError
    # Unknown code: fall back on the status. A 200 carrying a numeric Code ("401") uses that.
    effective = int(code) if status < 300 and code.isdigit() else status
    if effective == 429:
        return ThrottledError
    if effective >= 500:
        return TransientError
    return PermanentError


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """``x-acs-retry-after`` (milliseconds, as the SDK reads it) in seconds; None if absent/bad."""
    raw = headers.get("x-acs-retry-after")
    if raw is None:
        return None
    try:
        millis = int(raw.strip())
    except ValueError:
        return None
    return millis / 1000.0 if millis > 0 else None


def classify_response(
    *,
    action: str,
    status: int,
    body: Mapping[str, Any] | None,
    headers: Mapping[str, str],
    billed: bool | None = None,
) -> CloudAuthError:
    """Build the error for a provider reply that is not a success.

    ``body`` is the decoded JSON object, or None when the body could not be decoded; ``billed``
    is passed on to a ``TransientError`` (default: derived from ``action``).
    """
    retry_after = parse_retry_after(headers)
    header_request_id = headers.get("x-acs-request-id")
    if body is None:
        common: dict[str, Any] = {
            "action": action,
            "status": status,
            "request_id": header_request_id,
        }
        if retry_after is not None or status == 429:
            return ThrottledError(
                "throttled (unparsable body)", code="Throttling", retry_after=retry_after, **common
            )
        if status >= 500 or status < 300:
            return MalformedResponse("reply body is not a JSON object", billed=billed, **common)
        return PermanentError(f"HTTP {status} without a JSON body", code=f"HTTP{status}", **common)

    code = str(body.get("Code") or body.get("code") or "")
    message = str(body.get("Message") or body.get("message") or "")
    request_id = body.get("RequestId") or body.get("requestId") or header_request_id
    recommend = body.get("Recommend") or body.get("recommend")
    kw: dict[str, Any] = {
        "action": action,
        "status": status,
        "code": code or f"HTTP{status}",
        "request_id": str(request_id) if request_id is not None else None,
        "recommend": str(recommend) if recommend else None,
    }
    cls = ThrottledError if retry_after is not None else _error_class(code, status)
    if cls is ThrottledError:
        return ThrottledError(message, retry_after=retry_after, **kw)
    if cls is TransientError:
        # An explicit error reply means the provider saw the call fail; nothing was processed.
        return TransientError(message, maybe_processed=False, billed=billed, **kw)
    return cls(message, **kw)
