"""Evidence downloads: ``GET /evidence/<tid>.webm?Expires=<epoch>&Signature=<hmac>``.

Behaves like an object store's presigned link: 403 when tampered or expired (emulated clock),
404 once the video is gone (after the fresh-link window); streams in chunks, honours
``Range: bytes=N-`` (206) so broken transfers resume, and applies the download faults.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from urllib.parse import parse_qsl

from worker.emulator.asgi import Receive, Scope, Send, abort_connection, send_bytes
from worker.emulator.media import iter_video
from worker.emulator.state import EmulatorState
from worker.emulator.transactions import Transaction

log = logging.getLogger(__name__)

PREFIX = "/evidence/"
SUFFIX = ".webm"
_XML = b"application/xml"


def _oss_error(code: str, message: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    ).encode()


def parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """``bytes=N-`` or ``bytes=N-M`` -> ``(start, end_exclusive)``; None if absent.

    ``ValueError`` if unsatisfiable or malformed.
    """
    if not value:
        return None
    unit, _, spec = value.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        raise ValueError("unsupported range")
    first, _, last = spec.strip().partition("-")
    if not first:
        length = int(last)
        if length <= 0:
            raise ValueError("empty suffix range")
        return max(0, size - length), size
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if start >= size or end <= start:
        raise ValueError("unsatisfiable range")
    return start, end


async def handle_evidence(state: EmulatorState, scope: Scope, receive: Receive, send: Send) -> None:
    """Serve (part of) an evidence video, or the object store's error."""
    state.downloads.requests += 1
    tx = await _linked_video(state, scope, send)
    if tx is None:
        return
    size = tx.video_size
    header = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    try:
        span = parse_range(header.get("range"), size)
    except ValueError:
        await send_bytes(
            send,
            416,
            _oss_error("InvalidRange", "The requested range is not satisfiable."),
            _XML,
            [(b"content-range", f"bytes */{size}".encode())],
        )
        return
    await _send_video(state, scope, send, tx, span)


async def _linked_video(state: EmulatorState, scope: Scope, send: Send) -> Transaction | None:
    """The transaction whose video the link names; None once the 403 or 404 is sent."""
    stats = state.downloads
    path: str = scope["path"]
    transaction_id = path[len(PREFIX) : -len(SUFFIX)] if path.endswith(SUFFIX) else ""
    query = dict(parse_qsl(scope["query_string"].decode("latin-1")))
    now = state.clock.now()
    tx = state.store.get(transaction_id, now) if transaction_id else None
    try:
        expires = int(query.get("Expires", ""))
    except ValueError:
        expires = -1
    good = expires >= 0 and hmac.compare_digest(
        query.get("Signature", ""), state.link_signature(transaction_id, expires)
    )
    if not good:
        stats.forbidden += 1
        message = "The request signature we calculated does not match the signature you provided."
        await send_bytes(send, 403, _oss_error("SignatureDoesNotMatch", message), _XML)
        return None
    if now > expires:
        stats.forbidden += 1
        await send_bytes(send, 403, _oss_error("AccessDenied", "Request has expired."), _XML)
        return None
    gone = (
        tx is None
        or tx.completed_at is None
        or tx.video_size <= 0
        or now > tx.completed_at + state.config.fresh_link_window
    )
    if gone:
        stats.not_found += 1
        await send_bytes(
            send, 404, _oss_error("NoSuchKey", "The specified key does not exist."), _XML
        )
        return None
    return tx


async def _send_video(
    state: EmulatorState,
    scope: Scope,
    send: Send,
    tx: Transaction,
    span: tuple[int, int] | None,
) -> None:
    """The video, whole (200) or the ``span`` asked for (206); headers only for ``HEAD``."""
    size = tx.video_size
    start, end = span or (0, size)
    headers = [
        (b"content-type", b"video/webm"),
        (b"content-length", str(end - start).encode()),
        (b"accept-ranges", b"bytes"),
    ]
    if tx.video_sha256:
        headers.append((b"etag", f'"{tx.video_sha256[:32]}"'.encode()))
    status = 200
    if span is not None:
        status = 206
        state.downloads.partial += 1
        headers.append((b"content-range", f"bytes {start}-{end - 1}/{size}".encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    if scope["method"] == "HEAD":
        await send({"type": "http.response.body", "body": b""})
        return
    await _stream(state, send, tx.transaction_id, start, end)


async def _stream(
    state: EmulatorState, send: Send, transaction_id: str, start: int, end: int
) -> None:
    stats, faults = state.downloads, state.faults
    cut_at: int | None = None
    if faults.break_downloads > 0:
        faults.break_downloads -= 1
        after = faults.break_after_bytes
        cut_at = start + (after if after is not None else (end - start) // 2)
    rate = faults.download_bytes_per_s
    began = time.monotonic()
    sent = 0
    for chunk in iter_video(transaction_id, start, end):
        if cut_at is not None and start + sent + len(chunk) > cut_at:
            keep = max(0, cut_at - start - sent)
            if keep:
                await send(
                    {"type": "http.response.body", "body": bytes(chunk[:keep]), "more_body": True}
                )
                stats.bytes_sent += keep
            stats.broken += 1
            log.debug("evidence download cut after %d bytes", sent + keep)
            if not await abort_connection(send):
                raise ConnectionAbortedError("download cut by fault injection")
            return
        await send({"type": "http.response.body", "body": bytes(chunk), "more_body": True})
        sent += len(chunk)
        stats.bytes_sent += len(chunk)
        if rate > 0:
            ahead = sent / rate - (time.monotonic() - began)
            if ahead > 0:
                await asyncio.sleep(ahead)
    await send({"type": "http.response.body", "body": b""})
    stats.completed += 1
