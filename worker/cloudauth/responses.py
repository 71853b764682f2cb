"""Decoding of replies: a success body, or the classified error of a reply or transport failure.

A reply is read in bounded memory (``read_body``: at most ``IDV_MAX_RESPONSE_BYTES``, the
stream is closed past it) and decoded with a bounded nesting depth (``IDV_MAX_RESPONSE_DEPTH``;
a 100k-deep array is a ``MalformedResponse``, never a ``RecursionError``). A success body must
carry a ``Result`` object whose fields fit the model (``worker.cloudauth.shapes``) before it is
parsed into a typed result. Every refusal is a ``MalformedResponse`` naming the field: the
provider answered, so the call may have been processed - retried for an idempotent action, held
back for a billed one (``billed``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

import httpx
from pydantic import ValidationError

from worker.cloudauth.errors import MalformedResponse, TransientError, classify_response
from worker.cloudauth.models import ResultModel
from worker.cloudauth.shapes import json_depth_exceeds, problem

_R = TypeVar("_R", bound=ResultModel)

# Transport failures that cannot have reached the provider's application.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.WriteError)

DEFAULT_MAX_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_DEPTH = 64


def transport_error(
    action: str, exc: httpx.HTTPError, *, billed: bool | None = None
) -> TransientError:
    """A transport failure as a ``TransientError`` (no URL or parameters in the message)."""
    kind = type(exc).__name__
    code = "HttpTimeout" if isinstance(exc, httpx.TimeoutException) else "HttpTransportError"
    return TransientError(
        f"{kind}: {exc}" if str(exc) else kind,
        action=action,
        code=code,
        maybe_processed=not isinstance(exc, _NOT_SENT),
        billed=billed,
    )


def read_body(
    action: str,
    response: httpx.Response,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    billed: bool | None = None,
) -> bytes:
    """The body of a streamed ``response``, refused past ``max_bytes`` (the rest is not read)."""
    common: dict[str, Any] = {
        "action": action,
        "status": response.status_code,
        "request_id": response.headers.get("x-acs-request-id"),
        "billed": billed,
        "field": "body",
    }
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise MalformedResponse(
            f"reply body of {declared} bytes is larger than {max_bytes}", **common
        )
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise MalformedResponse(f"reply body larger than {max_bytes} bytes", **common)
            chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise transport_error(action, exc, billed=billed) from None
    return b"".join(chunks)


def _decode(content: bytes, max_depth: int) -> tuple[Any, bool]:
    """(decoded JSON or None, whether it was refused for its depth)."""
    try:
        decoded = json.loads(content)
    except RecursionError:
        return None, True
    except (ValueError, UnicodeDecodeError):
        return None, False
    return (None, True) if json_depth_exceeds(decoded, max_depth) else (decoded, False)


def success_body(
    action: str,
    response: httpx.Response,
    *,
    content: bytes | None = None,
    max_depth: int = DEFAULT_MAX_DEPTH,
    billed: bool | None = None,
) -> dict[str, Any]:
    """The decoded body of a success reply; raise the classified error otherwise.

    ``content`` is the body already read with ``read_body`` (default: ``response.content``).
    """
    decoded, too_deep = _decode(response.content if content is None else content, max_depth)
    status = response.status_code
    if too_deep:
        raise MalformedResponse(
            f"reply body nested deeper than {max_depth} levels",
            action=action,
            status=status,
            request_id=response.headers.get("x-acs-request-id"),
            billed=billed,
            field="body",
        )
    body: dict[str, Any] | None = decoded if isinstance(decoded, dict) else None
    if 200 <= status < 300:
        if body is not None and body.get("Code") == "Success":
            if not body.get("RequestId") and "x-acs-request-id" in response.headers:
                body["RequestId"] = response.headers["x-acs-request-id"]
            return body
        if body is not None and not body.get("Code"):
            # The SDK maps only ``Code`` on success paths: anything else is not an answer.
            body = None
    raise classify_response(
        action=action, status=status, body=body, headers=response.headers, billed=billed
    )


def _result_object(body: Mapping[str, Any]) -> Any:
    result = body.get("Result")
    if isinstance(result, str):
        try:
            result = json.loads(result)
        except (ValueError, RecursionError):
            return None
    return result


def parse_result(
    model: type[_R],
    action: str,
    body: dict[str, Any],
    *,
    billed: bool | None = None,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> _R:
    """The typed result of a success body; ``MalformedResponse`` naming the field otherwise."""
    request_id = str(body.get("RequestId") or "") or None
    common: dict[str, Any] = {
        "action": action,
        "status": 200,
        "request_id": request_id,
        "billed": billed,
    }
    result = _result_object(body)
    if not isinstance(result, Mapping):
        what = "missing" if result is None else f"a {type(result).__name__}, not an object"
        raise MalformedResponse(f"success reply with Result {what}", field="Result", **common)
    if json_depth_exceeds(result, max_depth):
        raise MalformedResponse(
            f"Result nested deeper than {max_depth} levels", field="Result", **common
        )
    found = problem(model, result, max_depth=max_depth)
    if found is not None:
        field, reason = found
        raise MalformedResponse(f"{action} reply: {field}: {reason}", field=field, **common)
    try:
        return model.from_body(body)
    except ValidationError as exc:
        raise MalformedResponse(
            f"unparsable {action} result ({exc.error_count()} field errors)",
            field=".".join(str(p) for p in exc.errors()[0]["loc"]) if exc.errors() else "Result",
            **common,
        ) from None
