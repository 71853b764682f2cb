"""ASGI plumbing of the receiver: reading a bounded body, parsing a form, answering."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

MAX_FIELDS = 32

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _Reply(Exception):
    """An early answer (413, 415, 400) produced while reading the request."""

    def __init__(self, status: int, outcome: str, reason: str) -> None:
        self.status = status
        self.outcome = outcome
        self.reason = reason
        super().__init__(reason)


def _parse(raw: bytes) -> list[tuple[str, str]]:
    if not raw:
        return []
    text = raw.decode("utf-8", errors="strict")
    return parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_FIELDS)


async def _read_body(receive: Receive, limit: int, timeout_s: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise _Reply(408, "timeout", "request body not received in time") from None
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _Reply(413, "too_large", "request body too large")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _respond(send: Send, status: int, payload: dict[str, Any], **extra: str) -> None:
    body = json.dumps(payload).encode()
    await _respond_text(send, status, body, "application/json", **extra)


async def _respond_text(
    send: Send, status: int, body: str | bytes, content_type: str, **extra: str
) -> None:
    data = body.encode() if isinstance(body, str) else body
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(data)).encode()),
        (b"cache-control", b"no-store"),
    ]
    headers += [(k.encode(), v.encode()) for k, v in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
