"""Read an HTTP body up to a limit counted in *decoded* bytes.

httpx decodes ``Content-Encoding: gzip`` a network chunk at a time, and one 64 KB chunk of a
gzip bomb inflates to tens of megabytes before a caller can count them. Here the raw bytes are
inflated with zlib's ``max_length``, so no more than ``limit + 1`` decoded bytes are ever made
and at most one network chunk past the limit is read. Encodings other than gzip and deflate
(or several stacked) are refused: an image source has no need for them.
"""

from __future__ import annotations

import time
import zlib

import httpx

from worker.batch.readerrors import ImageRejected, SourceUnavailable

_GZIP_WBITS = 16 + zlib.MAX_WBITS


class _Inflater:
    """Incremental gzip/deflate decoding that never makes more than asked for."""

    def __init__(self, encoding: str) -> None:
        self._deflate = encoding == "deflate"
        self._wbits = zlib.MAX_WBITS if self._deflate else _GZIP_WBITS
        self._z = zlib.decompressobj(self._wbits)
        self._started = False

    def feed(self, data: bytes, room: int) -> bytes:
        """Up to ``room`` decoded bytes of ``data`` (the rest of ``data`` is dropped)."""
        out = bytearray()
        while data and len(out) < room:
            try:
                out += self._z.decompress(data, room - len(out))
            except zlib.error:
                if self._deflate and not self._started:
                    # "deflate" is sent both zlib-wrapped (the standard) and raw.
                    self._wbits = -zlib.MAX_WBITS
                    self._z = zlib.decompressobj(self._wbits)
                    self._started = True
                    continue
                raise ImageRejected(
                    "ImageUnreadable", "the image download's compressed body is corrupt"
                ) from None
            self._started = True
            if self._z.eof:  # a gzip file may hold several members
                data = self._z.unused_data
                self._z = zlib.decompressobj(self._wbits)
            else:
                data = self._z.unconsumed_tail
        return bytes(out)


def _encoding(response: httpx.Response) -> str | None:
    codings = [
        c.strip().lower()
        for c in response.headers.get("content-encoding", "").split(",")
        if c.strip() and c.strip().lower() != "identity"
    ]
    if not codings:
        return None
    if len(codings) == 1 and codings[0] in ("gzip", "x-gzip", "deflate"):
        return "deflate" if codings[0] == "deflate" else "gzip"
    raise ImageRejected(
        "ImageEncoding", "the image download uses a content encoding other than gzip or deflate"
    )


def read_limited(response: httpx.Response, limit: int, deadline: float) -> bytes:
    """The body of a streamed ``response``, decoded, cut at ``limit + 1`` bytes."""
    if response.is_stream_consumed:  # built in memory (a mock transport): already decoded
        return response.content[: limit + 1]
    encoding = _encoding(response)
    inflater = _Inflater(encoding) if encoding else None
    buf = bytearray()
    for raw in response.iter_raw():
        room = limit + 1 - len(buf)
        buf += inflater.feed(raw, room) if inflater else raw[:room]
        if len(buf) > limit:
            break
        if time.monotonic() > deadline:
            raise SourceUnavailable("SourceTimeout", "image download took too long")
    return bytes(buf)
