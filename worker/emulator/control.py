"""The control API under ``/_emulator/``: plain JSON, no signature, for tests, demos and benches.

``POST|GET /_emulator/transactions``, ``GET /_emulator/transactions/{tid}``,
``POST /_emulator/transactions/{tid}/complete``, ``GET|PUT /_emulator/clock``,
``GET|PUT /_emulator/faults``, ``GET|PUT /_emulator/quotas``,
``GET|PUT /_emulator/quota-algorithm``, ``GET /_emulator/stats``, ``GET /_emulator/calls[/..]``,
``POST /_emulator/reset``, ``GET /_emulator/health``, ``GET /_emulator/flow/{tid}``.
Every endpoint and its payload is described in ``worker/emulator/README.md``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any
from urllib.parse import parse_qsl

from worker.emulator.actions import check_callback_url
from worker.emulator.asgi import (
    BodyTooLarge,
    Receive,
    Scope,
    Send,
    read_body,
    send_bytes,
    send_json,
)
from worker.emulator.config import ConfigError, parse_quota_policy, parse_quotas
from worker.emulator.doctypes import canonical_doc_type
from worker.emulator.media import build_images, video_sha256
from worker.emulator.products import (
    CHECK_RESULT_SPOOF_TYPES,
    DUPLICATE_FACE,
    SPOOFED,
    SUCCESS,
    product,
)
from worker.emulator.state import EmulatorState
from worker.emulator.transactions import (
    MERCHANT_BIZ_ID,
    Transaction,
    has_face,
    new_transaction_id,
)

PREFIX = "/_emulator/"
DEFAULT_VIDEO_SIZE = 256 * 1024
MAX_VIDEO_SIZE = 4 * 1024**3


class ControlError(Exception):
    """A refused control call: ``status`` and a message for the caller."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


def _object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except ValueError:
        raise ControlError(400, "body must be JSON") from None
    if not isinstance(value, dict):
        raise ControlError(400, "body must be a JSON object")
    return value


def _text(payload: dict[str, Any], name: str, required: bool = False) -> str | None:
    value = payload.get(name)
    if value is None or value == "":
        if required:
            raise ControlError(400, f"{name} is required")
        return None
    if not isinstance(value, str):
        raise ControlError(400, f"{name} must be a string")
    return value


async def handle_control(state: EmulatorState, scope: Scope, receive: Receive, send: Send) -> None:
    """Dispatch one control call."""
    method: str = scope["method"]
    parts = scope["path"][len(PREFIX) :].strip("/").split("/")
    try:
        try:
            body = await read_body(receive)
        except BodyTooLarge:
            raise ControlError(413, "body too large") from None
        if parts[0] == "flow" and len(parts) == 2:
            page = f"<html><body><p>Verification flow {parts[1]}</p></body></html>"
            await send_bytes(send, 200, page.encode(), b"text/html;charset=utf-8")
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        status, result = await _route(state, method, parts, _object(body) if body else {}, query)
    except ControlError as exc:
        await send_json(send, exc.status, {"error": exc.message})
        return
    except ConfigError as exc:
        await send_json(send, 400, {"error": str(exc)})
        return
    await send_json(send, status, result)


async def _route(
    state: EmulatorState,
    method: str,
    parts: list[str],
    payload: dict[str, Any],
    query: dict[str, str],
) -> tuple[int, Any]:
    head = parts[0]
    if head == "health" and method == "GET":
        return 200, {"ok": True}
    if head == "calls" and method == "GET":
        return 200, _calls(state, parts)
    if head == "transactions":
        if len(parts) == 1 and method == "POST":
            return 201, {"transaction_id": _create(state, payload).transaction_id}
        if len(parts) == 1 and method == "GET":
            return 200, _list(state, query)
        tx = _find(state, parts[1]) if len(parts) >= 2 else None
        if tx is not None and len(parts) == 2 and method == "GET":
            return 200, tx.state()
        if tx is not None and len(parts) == 3 and parts[2] == "complete" and method == "POST":
            return 200, await complete(state, tx, payload)
    elif head == "clock":
        if method == "PUT":
            _set_clock(state, payload)
            state.purge()
        if method in ("GET", "PUT"):
            clock = state.clock
            return 200, {"now": clock.now(), "offset": clock.offset(), "speed": clock.speed}
    elif head == "faults":
        if method == "PUT":
            state.set_faults(payload)
        if method in ("GET", "PUT"):
            return 200, state.faults.as_dict()
    elif head == "quotas":
        if method == "PUT":
            state.quotas.update(parse_quotas(payload))
        if method in ("GET", "PUT"):
            return 200, dict(state.quotas.quotas)
    elif head == "quota-algorithm":
        if method == "PUT":
            state.quotas.set_algorithm(*parse_quota_policy(payload))
        if method in ("GET", "PUT"):
            return 200, state.quotas.policy()
    elif head == "stats" and method == "GET":
        return 200, state.stats()
    elif head == "reset" and method == "POST":
        flags = {k: bool(payload.get(k, k == "stats")) for k in _RESET_PARTS}
        state.reset(**flags)
        return 200, {"reset": sorted(k for k, v in flags.items() if v)}
    raise ControlError(404, f"no control endpoint {method} {PREFIX}{'/'.join(parts)}")


_RESET_PARTS = ("stats", "state", "clock", "faults", "quotas")


def _calls(state: EmulatorState, parts: list[str]) -> Any:
    """``calls``, ``calls/CheckResult/{tid}`` or ``calls/DocOcrV2/{merchant_biz_id}``."""
    if len(parts) == 1:
        return state.calls.snapshot()
    if len(parts) == 3 and parts[1] == "CheckResult":
        return state.calls.check_result_of(parts[2])
    if len(parts) == 3 and parts[1] == "DocOcrV2":
        return state.calls.doc_ocr_of(parts[2])
    raise ControlError(404, "calls, calls/CheckResult/{tid} or calls/DocOcrV2/{merchant_biz_id}")


def _list(state: EmulatorState, query: dict[str, str]) -> dict[str, Any]:
    """Transactions still retained, optionally only those in one ``callback_state``."""
    wanted = query.get("callback_state")
    found = [tx.state() for tx in state.store.all() if wanted in (None, tx.callback_state)]
    return {"transactions": found}


def _find(state: EmulatorState, transaction_id: str) -> Transaction:
    tx = state.store.get(transaction_id, state.clock.now())
    if tx is None:
        raise ControlError(404, "unknown transaction (or past retention)")
    return tx


def _flag(payload: dict[str, Any], name: str) -> bool:
    value = payload.get(name, False)
    if not isinstance(value, bool):
        raise ControlError(400, f"{name} must be true or false")
    return value


def _create(state: EmulatorState, payload: dict[str, Any]) -> Transaction:
    product = _text(payload, "product_code", required=True)
    assert product is not None
    if not state.quotas.knows(product):
        raise ControlError(400, f"unknown product_code {product!r}")
    biz = _text(payload, "merchant_biz_id", required=True) or ""
    if not MERCHANT_BIZ_ID.fullmatch(biz):
        raise ControlError(400, "merchant_biz_id must be up to 32 letters and digits")
    callback = _text(payload, "callback_url")
    if callback is not None:
        try:
            check_callback_url(callback)
        except Exception:
            raise ControlError(400, "callback_url must be an http(s) URL") from None
    doc_type = _text(payload, "doc_type")
    if doc_type is not None:
        doc_type = canonical_doc_type(doc_type)
        if doc_type is None:
            raise ControlError(400, "unknown doc_type")
    tx = Transaction(
        transaction_id=new_transaction_id(),
        product_code=product,
        merchant_biz_id=biz,
        merchant_user_id=_text(payload, "merchant_user_id", required=True) or "",
        created_at=state.clock.now(),
        callback_url=callback,
        callback_token=_text(payload, "callback_token"),
        doc_type=doc_type,
        id_spoof=_flag(payload, "id_spoof"),
        auto_registration=_flag(payload, "auto_registration"),
    )
    state.store.add(tx)
    return tx


def _outcome(tx: Transaction, payload: dict[str, Any]) -> tuple[str, str]:
    """``(passed, sub_code)`` of a completion; 400 unless the product can give that pair."""
    spec = product(tx.product_code)
    passed = payload.get("passed", "Y")
    if passed not in ("Y", "N"):
        raise ControlError(400, "passed must be Y or N")
    default_code = SUCCESS if passed == "Y" else spec.default_failure()
    sub_code = str(payload.get("sub_code") or default_code)
    problem = spec.check_outcome(passed, sub_code, tx.id_spoof)
    if problem is not None:
        raise ControlError(400, f"invalid outcome passed={passed} sub_code={sub_code}: {problem}")
    return passed, sub_code


def _spoof_types(tx: Transaction, sub_code: str, payload: dict[str, Any]) -> list[str]:
    raw = payload.get("spoof_type")
    if sub_code != SPOOFED:
        if raw:
            raise ControlError(400, "spoof_type goes only with sub_code 212")
        return []
    if raw is None:
        pick = int(hashlib.sha256(tx.transaction_id.encode()).hexdigest(), 16)
        return [CHECK_RESULT_SPOOF_TYPES[pick % len(CHECK_RESULT_SPOOF_TYPES)]]
    if not isinstance(raw, list) or not raw or any(t not in CHECK_RESULT_SPOOF_TYPES for t in raw):
        known = ", ".join(CHECK_RESULT_SPOOF_TYPES)
        raise ControlError(400, f"spoof_type must be a non-empty list of {known}")
    return [str(t) for t in raw]


def _duplicates(sub_code: str, payload: dict[str, Any]) -> list[dict[str, Any]] | None:
    raw = payload.get("duplicate_face")
    if raw is None:
        return None
    if sub_code != DUPLICATE_FACE:
        raise ControlError(400, "duplicate_face goes only with sub_code 233")
    if not isinstance(raw, list) or not all(isinstance(d, dict) for d in raw):
        raise ControlError(400, "duplicate_face must be a list of objects")
    return raw


async def complete(
    state: EmulatorState, tx: Transaction, payload: dict[str, Any]
) -> dict[str, Any]:
    """Finish the flow now (emulated time): outcome, evidence, and the callback."""
    if tx.completed or tx.completing:
        raise ControlError(409, "transaction already completed")
    passed, sub_code = _outcome(tx, payload)
    spoof_type = _spoof_types(tx, sub_code, payload)
    duplicates = _duplicates(sub_code, payload)
    size = payload.get("video_size", DEFAULT_VIDEO_SIZE)
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_VIDEO_SIZE:
        raise ControlError(400, f"video_size must be an integer in 0..{MAX_VIDEO_SIZE}")
    face, id_info = payload.get("face") or {}, payload.get("id_info") or {}
    if not isinstance(face, dict) or not isinstance(id_info, dict):
        raise ControlError(400, "face and id_info must be objects")
    tx.completing = True
    tx.fill_id_fields(id_info)
    with_face = has_face(tx.product_code)
    tx.video_size = size if with_face else 0
    images, digest = await asyncio.gather(
        asyncio.to_thread(
            build_images,
            tx.transaction_id,
            (tx.doc_type or "00000006") if tx.id_fields is not None else None,
            tx.id_fields,
            tx.id_back_fields,
            with_face,
        ),
        asyncio.to_thread(video_sha256, tx.transaction_id, tx.video_size),
    )
    state.images.put(tx.transaction_id, images)
    tx.video_sha256 = digest if tx.video_size else None
    tx.face_extra = face
    tx.passed, tx.sub_code = passed, sub_code
    tx.spoof_type, tx.duplicate_face = spoof_type, duplicates
    returned = tx.returned_images()
    tx.image_sha256 = {k: v for k, v in images.sha256s().items() if k in returned}
    tx.completed_at = state.clock.now()
    state.store.completed(tx)
    state.send_callback(tx, bool(payload.get("callback", True)))
    return {
        "transaction_id": tx.transaction_id,
        "completed_at": tx.completed_at,
        "passed": passed,
        "sub_code": sub_code,
        "video_size": tx.video_size,
        "video_sha256": tx.video_sha256,
        "images": dict(tx.image_sha256),
    }


def _set_clock(state: EmulatorState, payload: dict[str, Any]) -> None:
    known = {"offset", "advance", "speed"}
    if not payload or set(payload) - known:
        raise ControlError(400, "clock takes offset, advance and/or speed")
    try:
        values = {k: float(v) for k, v in payload.items()}
    except (TypeError, ValueError):
        raise ControlError(400, "clock values must be numbers") from None
    if "speed" in values and values["speed"] < 0:
        raise ControlError(400, "speed must be >= 0")
    if "offset" in values:
        state.clock.set_offset(values["offset"])
    if "advance" in values:
        state.clock.advance(values["advance"])
    if "speed" in values:
        state.clock.set_speed(values["speed"])
