"""Decoding of replies: a success body, or the classified error of a reply or transport failure.

A typed result is parsed from the body; a body that does not parse is a ``TransientError``
with ``maybe_processed=True`` (the provider answered, so a billed call may have been billed).
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import httpx
from pydantic import ValidationError

from worker.cloudauth.errors import TransientError, classify_response
from worker.cloudauth.models import ResultModel

_R = TypeVar("_R", bound=ResultModel)

# Transport failures that cannot have reached the provider's application.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.WriteError)


def transport_error(action: str, exc: httpx.HTTPError) -> TransientError:
    """A transport failure as a ``TransientError`` (no URL or parameters in the message)."""
    kind = type(exc).__name__
    code = "HttpTimeout" if isinstance(exc, httpx.TimeoutException) else "HttpTransportError"
    return TransientError(
        f"{kind}: {exc}" if str(exc) else kind,
        action=action,
        code=code,
        maybe_processed=not isinstance(exc, _NOT_SENT),
    )


def success_body(action: str, response: httpx.Response) -> dict[str, Any]:
    """The decoded body of a success reply; raise the classified error otherwise."""
    body: dict[str, Any] | None
    try:
        decoded = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        decoded = None
    body = decoded if isinstance(decoded, dict) else None
    status = response.status_code
    if 200 <= status < 300:
        if body is not None and body.get("Code") == "Success":
            if not body.get("RequestId") and "x-acs-request-id" in response.headers:
                body["RequestId"] = response.headers["x-acs-request-id"]
            return body
        if body is not None and not body.get("Code"):
            # The SDK maps only ``Code`` on success paths: anything else is not an answer.
            body = None
    raise classify_response(action=action, status=status, body=body, headers=response.headers)


def parse_result(model: type[_R], action: str, body: dict[str, Any]) -> _R:
    """The typed result of a success body; ``TransientError`` if it does not parse."""
    try:
        return model.from_body(body)
    except ValidationError as exc:
        raise TransientError(
            f"unparsable {action} result ({exc.error_count()} field errors)",
            action=action,
            status=200,
            code="MalformedResponse",
            request_id=str(body.get("RequestId") or "") or None,
            maybe_processed=True,
        ) from None
