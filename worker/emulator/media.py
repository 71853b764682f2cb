"""Deterministic evidence of a completed transaction: the liveness video and the images.

The video's bytes are a 1 MiB block seeded by the transaction id, repeated to the wanted size, so
any range of a video of any size can be streamed without holding it in memory.
"""

from __future__ import annotations

import base64
import hashlib
import random
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from worker.emulator.doctypes import EMBLEM_SIDE, FACE_SIDE
from worker.emulator.render import render_card, render_face

VIDEO_BLOCK = 1 << 20
CHUNK = 64 * 1024
WEBM_MAGIC = b"\x1a\x45\xdf\xa3"


@lru_cache(maxsize=8)
def video_block(transaction_id: str) -> bytes:
    """The 1 MiB block the video of ``transaction_id`` repeats (starts with the WebM magic)."""
    seed = hashlib.sha256(b"video:" + transaction_id.encode()).digest()
    return WEBM_MAGIC + random.Random(seed).randbytes(VIDEO_BLOCK - len(WEBM_MAGIC))


def iter_video(
    transaction_id: str, start: int, end: int, chunk: int = CHUNK
) -> Iterator[memoryview]:
    """Bytes ``start..end`` (end exclusive) of the video, in chunks of at most ``chunk``."""
    block = memoryview(video_block(transaction_id))
    pos = start
    while pos < end:
        offset = pos % VIDEO_BLOCK
        take = min(chunk, end - pos, VIDEO_BLOCK - offset)
        yield block[offset : offset + take]
        pos += take


def video_sha256(transaction_id: str, size: int) -> str:
    """SHA-256 of the whole video (about 0.5 s per GiB; run it off the event loop)."""
    digest = hashlib.sha256()
    block = video_block(transaction_id)
    full, rest = divmod(size, VIDEO_BLOCK)
    for _ in range(full):
        digest.update(block)
    digest.update(block[:rest])
    return digest.hexdigest()


@dataclass(frozen=True)
class EvidenceImages:
    """Encoded JPEG bytes; ``id_back`` only for two-sided documents."""

    face: bytes | None
    id_front: bytes | None
    id_back: bytes | None

    def sha256s(self) -> dict[str, str]:
        out = {}
        for key, data in (("faceImg", self.face), ("idImage", self.id_front)):
            if data is not None:
                out[key] = hashlib.sha256(data).hexdigest()
        if self.id_back is not None:
            out["idBackImage"] = hashlib.sha256(self.id_back).hexdigest()
        return out

    @staticmethod
    def b64(data: bytes | None) -> str | None:
        return base64.b64encode(data).decode() if data is not None else None


def build_images(
    transaction_id: str,
    doc_type: str | None,
    front: dict[str, str] | None,
    back: dict[str, str] | None,
    with_face: bool,
) -> EvidenceImages:
    """Render the face and ID pictures of a transaction (deterministic in their inputs)."""
    face = render_face(b"face:" + transaction_id.encode()) if with_face else None
    id_front = id_back = None
    if doc_type is not None and front is not None:
        id_front = render_card(doc_type, FACE_SIDE, front, "jpeg")
        if back:
            id_back = render_card(doc_type, EMBLEM_SIDE, back, "jpeg")
    return EvidenceImages(face, id_front, id_back)


class ImageCache:
    """A small LRU of rendered images: they are re-rendered on demand rather than kept."""

    def __init__(self, capacity: int = 128) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, EvidenceImages] = OrderedDict()

    def get(self, key: str) -> EvidenceImages | None:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def put(self, key: str, images: EvidenceImages) -> None:
        self._items[key] = images
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def discard(self, key: str) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()
