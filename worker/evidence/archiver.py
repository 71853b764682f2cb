"""Evidence archival: the liveness video and the face / document images, into S3.

The video behind ``docVideoUrl`` is streamed from the provider's object store into
``ObjectStore.put_stream`` in bounded memory (a few S3 parts plus a few download chunks), hashed
on the way, verified, and the multipart upload aborted on any failure, so no partial object is
ever visible. A link is valid 15 minutes; ``CheckResult`` hands out fresh ones for 30 minutes
after the flow completed. So when a link has expired (HTTP 403/404/410) or a transfer breaks,
the archiver *resumes* where it stopped with ``Range: bytes=N-`` - first on the same link after a
short backoff, then on a fresh link from ``fresh_link`` (another ``CheckResult``); a server that
ignores the range is read from the start and the bytes already stored are skipped. Past the
deadline, or when the provider has no link any more, ``EvidenceLost``; when every allowed link
keeps breaking but the window is open, ``EvidenceUnavailable`` (the task tries again later).

Exceptions::

    EvidenceError          base; carries ``transaction_id`` and ``name`` (never a URL)
     ├── EvidenceLost      no usable link before the deadline: the video is gone
     ├── EvidenceUnavailable  transfers keep breaking on every link (window still open): retry
     └── BadEvidence       the provider sent something unusable (bad Base64, bad Content-Range)

Images arrive as Base64 inside the ``CheckResult`` reply and are decoded straight to S3; they
never pass through Redis or task arguments.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import httpx

from worker.evidence.download import (
    BadEvidence,
    DownloadPolicy,
    EvidenceError,
    EvidenceLost,
    EvidenceUnavailable,
    FreshLink,
    ResumableDownload,
    prefetch,
)
from worker.keys import Evidence, ObjectKeys
from worker.observability import Metrics, NullMetrics, get_logger
from worker.storage import DEFAULT_PART_SIZE, ObjectStore, StoredObject

__all__ = [
    "BadEvidence",
    "EvidenceArchiver",
    "EvidenceError",
    "EvidenceLost",
    "EvidenceUnavailable",
    "FreshLink",
    "VideoArchive",
    "decode_image",
    "sniff_image_type",
]

log = get_logger("evidence")

# Chunks read ahead of the upload (bounded memory: chunk_size each).
_PREFETCH_CHUNKS: Final = 8


@dataclass(frozen=True, slots=True)
class VideoArchive:
    """An archived video: the stored object and how it got there."""

    stored: StoredObject
    reused: bool
    links_used: int
    resumes: int


class EvidenceArchiver:
    """Copies evidence into the object store under deterministic keys (``worker.keys``).

    ``http`` is a client for the provider's evidence host (its timeouts bound a stalled
    transfer); ``heartbeat`` is called while streaming (at most every ``heartbeat_every_s``)
    so the caller can renew its lease.
    """

    def __init__(
        self,
        objects: ObjectStore,
        http: httpx.Client,
        keys: ObjectKeys,
        *,
        part_size: int = DEFAULT_PART_SIZE,
        chunk_size: int = 256 * 1024,
        max_links: int = 6,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        heartbeat_every_s: float = 5.0,
    ) -> None:
        self._objects = objects
        self._http = http
        self._keys = keys
        self._part_size = part_size
        self._policy = DownloadPolicy(chunk_size, max_links, heartbeat_every_s)
        self._metrics = metrics or NullMetrics()
        self._clock = clock
        self._sleep = sleep

    # ------------------------------------------------------------------ video

    def archive_video(
        self,
        transaction_id: str,
        completed_at: datetime,
        link: str | None,
        fresh_link: FreshLink,
        *,
        deadline: float | None,
        heartbeat: Callable[[], None] | None = None,
    ) -> VideoArchive:
        """Stream the video to ``evidence/.../<tid>/video.webm`` and return the verified object.

        An object already stored there is reused without downloading (its SHA-256 from its
        metadata, or read back from the store for a streamed one: ``head_verified``).
        ``deadline`` (epoch seconds; None = no limit) bounds asking for fresh links.
        Raises ``EvidenceLost``, ``BadEvidence`` or a ``StorageError`` (S3 trouble: retry later).
        """
        key = self._keys.evidence(transaction_id, completed_at, Evidence.VIDEO)
        existing = self._objects.head_verified(key)
        if existing is not None and existing.sha256:
            self._metrics.incr("idv_evidence", kind="video", outcome="reused")
            return VideoArchive(existing, reused=True, links_used=0, resumes=0)
        # A store known to be misconfigured refuses before the video is requested at all.
        self._objects.check_writable(key)
        source = ResumableDownload(
            self._http,
            transaction_id,
            link,
            fresh_link,
            deadline=deadline,
            heartbeat=heartbeat,
            policy=self._policy,
            metrics=self._metrics,
            clock=self._clock,
            sleep=self._sleep,
        )
        total, content_type = source.open()
        stored = self._objects.put_stream(
            key,
            prefetch(source.chunks(), _PREFETCH_CHUNKS),
            content_type=content_type,
            part_size=self._part_size,
            expected_size=total,
        )
        self._metrics.incr("idv_evidence", kind="video", outcome="stored")
        self._metrics.incr("idv_evidence_bytes", stored.size, kind="video")
        return VideoArchive(
            stored,
            reused=False,
            links_used=source.progress.links_used,
            resumes=source.progress.resumes,
        )

    # ------------------------------------------------------------------ images

    def store_image(
        self, transaction_id: str, completed_at: datetime, name: Evidence, data_b64: str
    ) -> StoredObject:
        """Decode a Base64 image to ``evidence/.../<tid>/<name>`` (skipped if already stored)."""
        data = decode_image(data_b64, transaction_id, name.value)
        key = self._keys.evidence(transaction_id, completed_at, name)
        digest = hashlib.sha256(data).hexdigest()
        existing = self._objects.head(key)
        if existing is not None and existing.sha256 == digest and existing.size == len(data):
            self._metrics.incr("idv_evidence", kind="image", outcome="reused")
            return existing
        stored = self._objects.put_bytes(key, data, content_type=sniff_image_type(data))
        self._metrics.incr("idv_evidence", kind="image", outcome="stored")
        return stored


def decode_image(data_b64: str, transaction_id: str, name: str) -> bytes:
    """Strict Base64 (whitespace and a ``data:`` prefix tolerated) -> bytes; else BadEvidence."""
    text = data_b64.strip()
    if text.startswith("data:"):
        text = text.partition(",")[2]
    text = "".join(text.split())
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadEvidence(transaction_id, name, "image is not valid Base64") from None
    if not data:
        raise BadEvidence(transaction_id, name, "image is empty")
    return data


def sniff_image_type(data: bytes) -> str:
    """Content type from the image's magic bytes (JPEG unless recognised otherwise)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "image/jpeg"
