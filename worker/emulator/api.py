"""The provider surface: ``POST /`` routed on ``x-acs-action`` (or the RPC ``Action`` parameter).

Order of checks, as a gateway does it: action and version, signature, account faults, quota,
injected faults, then the operation itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from worker.emulator.actions import ACTIONS
from worker.emulator.asgi import (
    JSON_TYPE,
    BodyTooLarge,
    Receive,
    Scope,
    Send,
    abort_connection,
    read_body,
    send_bytes,
)
from worker.emulator.auth import IncomingRequest
from worker.emulator.call import Call
from worker.emulator.config import API_VERSION
from worker.emulator.errors import ApiError, error_body, missing
from worker.emulator.state import EmulatorState

log = logging.getLogger(__name__)

HOST_ID = "cloudauth-intl.cn-hongkong.aliyuncs.com"
BAD_GATEWAY_PAGE = (
    b"<html><head><title>502 Bad Gateway</title></head>"
    b"<body><center><h1>502 Bad Gateway</h1></center></body></html>"
)
_FORM = "application/x-www-form-urlencoded"


def _request_id() -> str:
    return str(uuid.uuid4()).upper()


class Outcome(Exception):
    """Ends a call with a fault instead of an answer (``kind``: drop, truncate, non_json)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(kind)


@dataclass(slots=True)
class _Exchange:
    """One API call on its way through the checks, and what is known of it so far."""

    state: EmulatorState
    request_id: str
    action: str
    product: str | None = None
    # Set once the signature is verified: from then on the call is the provider's to count.
    counted: dict[str, str] | None = None
    truncate: bool = False
    malformed: str | None = None

    def count(self, outcome: str) -> None:
        # Before the answer leaves, so a caller that reads the counters next sees this call.
        if self.counted is not None:
            self.state.calls.record(self.action, self.counted, outcome)


async def handle_api(state: EmulatorState, scope: Scope, receive: Receive, send: Send) -> None:
    """Serve one provider API call."""
    request_id = _request_id()
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
    exchange = _Exchange(state, request_id, dict(headers).get("x-acs-action", ""))
    try:
        result = await _checked_run(exchange, scope, receive, headers)
        if result is None:
            exchange.count("throttled")
            await _answer_error(send, ApiError("Throttling.Api"), request_id)
            return
    except ApiError as error:
        state.quotas.record_error(exchange.product, exchange.action, error.code)
        exchange.count("error")
        await _answer_error(send, error, request_id)
        log.debug("api %s -> %s %s", exchange.action, error.status, error.code)
        return
    except Outcome as fault:
        state.quotas.record_error(exchange.product, exchange.action, fault.kind)
        exchange.count("error")
        await _answer_fault(send, fault.kind, request_id)
        log.debug("api %s -> fault %s", exchange.action, fault.kind)
        return
    exchange.count("success")
    payload = _success_payload(request_id, result, exchange.malformed)
    if exchange.truncate:
        assert exchange.product is not None
        state.quotas.record_error(exchange.product, exchange.action, "truncate")
        payload = payload[: max(1, len(payload) // 2)]
    await send_bytes(send, 200, payload, headers=[(b"x-acs-request-id", request_id.encode())])
    log.debug("api %s -> 200", exchange.action)


def _success_payload(request_id: str, result: dict[str, Any], malformed: str | None) -> bytes:
    """The success body, or the malformed one a fault asks for."""
    body: dict[str, Any] = {"RequestId": request_id, "Code": "Success", "Message": "success"}
    depth = 0
    if malformed == "bad_passed":
        result = {**result, "Passed": "Maybe"}
    elif malformed == "wrong_type":
        result = {**result, "SubCode": {"code": result.get("SubCode")}}
    elif malformed == "oversized":
        result = {**result, "Padding": "x" * (9 * 1024 * 1024)}
    elif malformed == "deep":
        depth = 100_000
    if malformed != "no_result":
        body["Result"] = result
    payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    if depth:
        # Built as bytes: json.dumps itself cannot nest this deep.
        payload = payload[:-1] + b',"Deep":' + b"[" * depth + b"]" * depth + b"}"
    return payload


async def _checked_run(
    exchange: _Exchange, scope: Scope, receive: Receive, headers: list[tuple[str, str]]
) -> dict[str, Any] | None:
    """Check the call in gateway order and run it: its result, or None if the quota refused it.

    Raises ``ApiError`` for a refused or failed call and ``Outcome`` for an injected fault.
    """
    state = exchange.state
    header = dict(headers)
    host = header.get("host", "127.0.0.1")
    try:
        body = await read_body(receive)
    except BodyTooLarge:
        raise ApiError("InvalidParameter", "The request body is too large.") from None
    query, body_params = _parameters(scope, header.get("content-type", ""), body)
    params = dict(query)
    params.update(body_params)
    exchange.action = exchange.action or params.get("Action", "")
    action = exchange.action
    if not action:
        raise missing("Action")
    version = header.get("x-acs-version") or params.get("Version")
    if version != API_VERSION:
        raise ApiError("InvalidVersion")
    spec = ACTIONS.get(action)
    if spec is None:
        raise ApiError("InvalidAction.NotFound")
    state.auth.verify(
        IncomingRequest(
            scope["method"], scope.get("path") or "/", query, headers, body, body_params
        )
    )
    exchange.counted = params
    faults = state.faults
    faulty = faults.applies_to(action)
    if faulty and faults.forbidden_code:
        raise ApiError(faults.forbidden_code, status=403)
    call = Call(action, params, host, state)
    exchange.product = spec.product(call)
    if faulty and faults.arrival_jitter_ms > 0:
        # The quota counts the call when it reaches the provider, not when it was sent.
        await asyncio.sleep(state.rng.uniform(0, faults.arrival_jitter_ms) / 1000)
    if not state.quotas.admit(exchange.product, action):
        return None
    if faulty:
        exchange.truncate = await _inject(state)
        exchange.malformed = faults.malformed_success
    return await spec.run(call)


def _parameters(
    scope: Scope, content_type: str, body: bytes
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Query and form-body parameters (``+`` is a space, blanks kept), each in wire order."""
    query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    body_params: list[tuple[str, str]] = []
    if body and (content_type.startswith(_FORM) or not content_type):
        body_params = parse_qsl(body.decode("latin-1"), keep_blank_values=True)
    return query, body_params


async def _inject(state: EmulatorState) -> bool:
    """Apply latency and roll the fault dice; True if the answer must be truncated."""
    faults = state.faults
    if faults.latency_ms > 0:
        await asyncio.sleep(faults.latency_ms / 1000)
    roll = state.rng.random()
    for rate, kind in (
        (faults.drop_rate, "drop"),
        (faults.error_500_rate, "InternalError"),
        (faults.error_503_rate, "ServiceUnavailable"),
        (faults.non_json_rate, "non_json"),
    ):
        if roll < rate:
            if kind in ("InternalError", "ServiceUnavailable"):
                raise ApiError(kind)
            raise Outcome(kind)
        roll -= rate
    return roll < faults.truncate_rate


async def _answer_error(send: Send, error: ApiError, request_id: str) -> None:
    await send_bytes(
        send,
        error.status,
        error_body(error, request_id, HOST_ID),
        JSON_TYPE,
        [(b"x-acs-request-id", request_id.encode())],
    )


async def _answer_fault(send: Send, kind: str, request_id: str) -> None:
    if kind == "drop" and await abort_connection(send):
        return
    await send_bytes(
        send,
        502,
        BAD_GATEWAY_PAGE,
        b"text/html",
        [(b"x-acs-request-id", request_id.encode())],
    )
