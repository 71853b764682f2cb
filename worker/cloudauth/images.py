"""Image format and dimensions read from the file header, without decoding pixels.

DocOcrV2 accepts JPEG and PNG of at most 1 MB with each side between 200 and 8192 px (seed 002);
checking this before a billed call saves a charge for an image the provider would reject.

The emulator parses headers with its own code (``worker.emulator.imagecheck``) on purpose: it
stands in for the provider, and a parser shared by both sides would let one wrong check pass on
both.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from worker.errors import InvalidInput

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8\xff"

# JPEG start-of-frame markers carrying the dimensions (SOF0..SOF15 except DHT, JPG, DAC).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


class ImageInfoError(InvalidInput):
    """The bytes are not a JPEG or PNG whose dimensions can be read from the header."""


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """``format`` is ``"jpeg"`` or ``"png"``; ``width``/``height`` in pixels."""

    format: str
    width: int
    height: int


def image_info(data: bytes) -> ImageInfo:
    """Format and size of a JPEG (from its SOF segment) or PNG (from IHDR).

    Raises ``ImageInfoError`` for any other format or a truncated/corrupt header.
    """
    if data.startswith(PNG_SIGNATURE):
        return _png_info(data)
    if data.startswith(JPEG_SOI):
        return _jpeg_info(data)
    raise ImageInfoError("not a JPEG or PNG image")


def _png_info(data: bytes) -> ImageInfo:
    # Signature (8) + chunk length (4) + b"IHDR" (4) + width (4) + height (4).
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ImageInfoError("PNG without an IHDR chunk")
    width, height = struct.unpack(">II", data[16:24])
    return ImageInfo("png", width, height)


def _jpeg_info(data: bytes) -> ImageInfo:
    pos = 2
    size = len(data)
    while pos < size:
        if data[pos] != 0xFF:
            raise ImageInfoError("corrupt JPEG marker stream")
        # Fill bytes: any number of 0xFF may precede a marker.
        while pos < size and data[pos] == 0xFF:
            pos += 1
        if pos >= size:
            break
        marker = data[pos]
        pos += 1
        if marker in _STANDALONE:
            continue
        if marker in (0xD9, 0xDA):  # EOI, or SOS before any frame header
            break
        if pos + 2 > size:
            break
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        if length < 2:
            raise ImageInfoError("corrupt JPEG segment length")
        if marker in _SOF_MARKERS:
            if pos + 7 > size:
                break
            height, width = struct.unpack(">HH", data[pos + 3 : pos + 7])
            return ImageInfo("jpeg", width, height)
        pos += length
    raise ImageInfoError("JPEG without a frame header")
