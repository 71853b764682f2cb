"""Minimal ASGI plumbing: reading a request body, sending whole responses, dropping connections."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_TYPE = b"application/json;charset=utf-8"
MAX_BODY = 16 * 1024 * 1024


class BodyTooLarge(Exception):
    """The request body exceeds ``MAX_BODY``."""


async def read_body(receive: Receive, limit: int = MAX_BODY) -> bytes:
    """The whole request body (``BodyTooLarge`` past ``limit``)."""
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body", False):
        return bytes(body)
    parts = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        parts.append(chunk)
    return b"".join(parts)


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = JSON_TYPE,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """A complete response with ``content-length``."""
    all_headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
    ]
    if headers:
        all_headers.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, payload: Any) -> None:
    await send_bytes(send, status, json.dumps(payload, separators=(",", ":")).encode())


async def abort_connection(send: Send) -> bool:
    """Close the client connection without (completing) a response.

    ASGI has no verb for this, so it reaches the server's transport behind ``send`` (uvicorn's
    protocol cycles expose it) and lets the event loop register the loss before returning.
    Returns False if no transport could be found.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        return False
    transport.abort()
    for _ in range(3):
        await asyncio.sleep(0)
    return True
