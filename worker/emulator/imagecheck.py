"""Image validation as the provider applies it to DocOcrV2, and the fields embedded in samples.

Headers are parsed directly (no decoding): format by content, dimensions from PNG ``IHDR`` or the
JPEG ``SOFn`` segment, completeness from the end marker. Sample images carry their expected
result as JSON in a PNG ``tEXt`` chunk or a JPEG ``COM`` segment, keyed ``EMBED_KEY``.

Deliberately independent of the client's parser (``worker.cloudauth.images``): the emulator stands
in for the provider, and a parser shared by both sides would let one wrong check pass on both.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from worker.emulator.errors import ApiError

MAX_IMAGE_BYTES = 1024 * 1024
MIN_SIDE, MAX_SIDE = 200, 8192
EMBED_KEY = "idv-emulator"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_COM_PREFIX = (EMBED_KEY + ":").encode()


@dataclass(frozen=True)
class ImageInfo:
    """What the header says: ``format`` is ``"jpeg"`` or ``"png"``; ``embedded`` may be None."""

    format: str
    width: int
    height: int
    embedded: dict[str, Any] | None


def sniff_format(data: bytes) -> str | None:
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(PNG_SIGNATURE):
        return "png"
    return None


def _decode_embedded(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _parse_png(data: bytes) -> ImageInfo | None:
    if b"IEND" not in data[-16:]:
        return None
    pos, size, embedded = 8, len(data), None
    width = height = 0
    while pos + 8 <= size:
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        chunk = data[pos + 8 : pos + 8 + length]
        if len(chunk) < length:
            return None
        if kind == b"IHDR" and length >= 8:
            width, height = struct.unpack_from(">II", chunk, 0)
        elif kind == b"tEXt":
            key, _, text = chunk.partition(b"\x00")
            if key == EMBED_KEY.encode():
                embedded = _decode_embedded(text)
        elif kind in (b"IDAT", b"IEND"):
            break
        pos += 12 + length
    if not width or not height:
        return None
    return ImageInfo("png", width, height, embedded)


def _parse_jpeg(data: bytes) -> ImageInfo | None:
    if data.rfind(b"\xff\xd9", max(0, len(data) - 64)) == -1:
        return None
    pos, size, embedded = 2, len(data), None
    while pos + 4 <= size:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        segment = data[pos + 4 : pos + 2 + length]
        if marker == 0xFE and segment.startswith(_JPEG_COM_PREFIX):
            embedded = _decode_embedded(segment[len(_JPEG_COM_PREFIX) :])
        elif marker in _JPEG_SOF and len(segment) >= 5:
            height, width = struct.unpack_from(">HH", segment, 1)
            return ImageInfo("jpeg", width, height, embedded)
        elif marker == 0xDA:
            return None
        pos += 2 + length
    return None


def inspect_image(data: bytes) -> ImageInfo | None:
    """Parse a JPEG or PNG header; None if not one, truncated, or malformed."""
    kind = sniff_format(data)
    try:
        if kind == "png":
            return _parse_png(data)
        if kind == "jpeg":
            return _parse_jpeg(data)
    except struct.error:
        return None
    return None


def validate_ocr_image(data: bytes) -> ImageInfo:
    """Apply the DocOcrV2 image rules: JPG/PNG by content, <= 1 MB, sides 200..8192 px."""
    if sniff_format(data) is None:
        raise ApiError("UnqualifiedPhoto", "The image is not a JPG or PNG picture.")
    if len(data) > MAX_IMAGE_BYTES:
        raise ApiError("ToolargeImage", "The image exceeds 1 MB.")
    info = inspect_image(data)
    if info is None:
        raise ApiError("UnqualifiedPhoto", "The image is incomplete or unreadable.")
    if not (MIN_SIDE <= info.width <= MAX_SIDE and MIN_SIDE <= info.height <= MAX_SIDE):
        raise ApiError(
            "UnqualifiedPhoto", "Each side of the image must be between 200 and 8192 pixels."
        )
    return info


def embed_payload(
    doc_type: str,
    card_side: str,
    fields: dict[str, str],
    sub_code: str,
    *,
    spoof_type: list[str] | None = None,
    quality: float | None = None,
) -> str:
    """The JSON text a sample carries (ASCII only, so it fits a PNG ``tEXt`` chunk).

    ``spoof_type`` names the spoofing a 212 sample shows; ``quality`` (0..100) is what the
    ``IdThreshold`` modes compare against.
    """
    payload: dict[str, Any] = {
        "doc_type": doc_type,
        "card_side": card_side,
        "fields": fields,
        "sub_code": sub_code,
    }
    if spoof_type is not None:
        payload["spoof_type"] = spoof_type
    if quality is not None:
        payload["quality"] = quality
    return json.dumps(payload, separators=(",", ":"))
