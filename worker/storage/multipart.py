"""Multipart uploads for ``worker.storage``: parts sent by a small thread pool in bounded memory.

``MultipartUpload`` numbers parts in the order the producer hands them over and keeps at most
``concurrency`` of them in flight: ``send`` blocks while that many are on the wire, so memory
stays at ``concurrency + 1`` part buffers (those in flight plus the one being filled) whatever
the speed of the source. The buffers of finished parts are recycled.

With ``checksum`` each part carries its SHA-256 (``ChecksumSHA256``, checked by the store on
arrival, in place of ``Content-MD5``) and the completed object gets S3's composite checksum,
``base64(sha256(part digests))-N``: ``composite_checksum`` computes the same value here, so it
can be compared with what ``HeadObject`` reports without reading the object back.

Failure handling: a part that fails with a retryable error (after botocore's own attempts) is
sent again from the buffer it still holds, up to ``part_attempts`` times with a short pause, the
upload kept open: a store outage of a few seconds resumes from the parts already stored instead
of starting the download again from byte 0. Any other error is raised to the producer at its
next ``send``/``check``/``finish`` call; ``abort`` cancels queued parts, waits for those on the
wire (an upload aborted while a part is still arriving can keep that part, and its storage
cost, alive) and then aborts the upload.

Every upload started and ended is reported to an ``UploadTracker`` (the stale-upload sweep's
index of "the keys we started"): an upload whose abort failed, or whose worker died, stays
there until the sweep aborts it.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from worker.backoff import UPLOAD_PART
from worker.storage.errors import NotSupported, StorageError, s3_call, s3_error

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB  # S3's minimum for every part but the last
MAX_PART_SIZE = 5 * 1024 * MIB
MAX_PARTS = 10_000


_Part = Future["CompletedPartTypeDef"]


class UploadTracker(Protocol):
    """Told of every multipart upload started and ended (``worker.stores.UploadRegistry``).

    Implementations must not raise: losing track of an upload costs at most some storage.
    """

    def started(self, key: str, upload_id: str) -> None: ...

    def ended(self, key: str, upload_id: str) -> None: ...


@dataclass(slots=True)
class _Pending:
    number: int
    body: bytearray | None
    call: Callable[..., CompletedPartTypeDef]
    args: tuple[Any, ...]
    attempt: int = 1


_abort_unsupported_logged = False


def content_md5(data: bytes | bytearray) -> str:
    """Base64 MD5 for ``Content-MD5``: the store rejects a body damaged in transit."""
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode("ascii")


class MultipartUpload:
    """One multipart upload in progress; up to ``concurrency`` parts in flight at once.

    Used by one producer thread; the parts go out on a private pool of ``concurrency``
    threads (per upload, so nothing outlives the call or crosses a fork).
    """

    def __init__(
        self, client: S3Client, bucket: str, key: str, upload_id: str, *, part_size: int,
        concurrency: int, tracker: UploadTracker | None = None, part_attempts: int = 1,
        checksum: bool = False,
    ) -> None:  # fmt: skip
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.tracker = tracker
        self.part_attempts = max(1, part_attempts)
        self.retried_parts = 0
        self.client = client
        self.bucket = bucket
        self.key = key
        self.upload_id = upload_id
        self.part_size = part_size
        self.concurrency = concurrency
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="s3-part")
        self._in_flight: dict[_Part, _Pending] = {}
        self._spare: list[bytearray] = []
        self._parts: list[CompletedPartTypeDef] = []
        self._numbered = 0
        self._failed = threading.Event()
        self._completed = False
        self.checksum = checksum
        self._digests: dict[int, bytes] = {}  # part number -> SHA-256 (with ``checksum``)

    @classmethod
    def start(
        cls, client: S3Client, bucket: str, key: str, *, part_size: int, concurrency: int,
        create_args: Mapping[str, Any], tracker: UploadTracker | None = None,
        part_attempts: int = 1, checksum: bool = False,
    ) -> MultipartUpload:  # fmt: skip
        """CreateMultipartUpload with ``create_args`` (content type, metadata, encryption);
        ``checksum``: parts carry their SHA-256 (``ChecksumAlgorithm=SHA256``)."""
        extra: dict[str, Any] = {"ChecksumAlgorithm": "SHA256"} if checksum else {}
        with s3_call("CreateMultipartUpload", key):
            resp = client.create_multipart_upload(Bucket=bucket, Key=key, **create_args, **extra)
        upload_id = resp["UploadId"]
        if tracker is not None:
            tracker.started(key, upload_id)
        return cls(
            client, bucket, key, upload_id, part_size=part_size, concurrency=concurrency,
            tracker=tracker, part_attempts=part_attempts, checksum=checksum,
        )  # fmt: skip

    # --- producer side ---

    def buffer(self) -> bytearray:
        """An empty part buffer: one a finished part gave back, else a new one."""
        return self._spare.pop() if self._spare else bytearray(self.part_size)

    def send(self, body: bytearray) -> None:
        """Queue ``body`` as the next part; blocks while ``concurrency`` parts are in flight.

        ``body`` belongs to the upload from now on (``buffer`` hands it out again once sent).
        """
        self._submit(_Pending(0, body, self._upload_part, (body,)))

    def check(self) -> None:
        """Raise the error of a failed part, if any (cheap: call it per chunk to stop early)."""
        if self._failed.is_set():
            self._failed.clear()
            self._collect([future for future in self._in_flight if future.done()])

    def finish(self) -> None:
        """Wait for every part; raises the error of a failed one."""
        while self._in_flight:  # a part sent again is waited for too
            done, _ = wait(list(self._in_flight))
            self._collect(done)
        self._pool.shutdown()

    def complete(self) -> str:
        """CompleteMultipartUpload (after ``finish``); returns the object's ETag."""
        parts = sorted(self._parts, key=lambda part: part["PartNumber"])
        with s3_call("CompleteMultipartUpload", self.key):
            resp = self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": parts},
            )
        self._completed = True
        self._ended()
        return resp.get("ETag", "")

    def composite_checksum(self) -> str | None:
        """S3's composite SHA-256 of the parts sent (``base64-N``); None without ``checksum``."""
        if not self.checksum:
            return None
        ordered = b"".join(self._digests[n] for n in sorted(self._digests))
        digest = base64.b64encode(hashlib.sha256(ordered).digest()).decode()
        return f"{digest}-{len(self._digests)}"

    def abort(self) -> None:
        """Cancel queued parts, wait for those being sent, then abort the upload (best effort).

        Never raises a storage error: ``abort_stale_uploads`` sweeps what is left, and the error
        that led here matters more.
        """
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._in_flight.clear()
        self._spare.clear()
        if self._completed:
            return
        global _abort_unsupported_logged
        try:
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id
            )
        except (ClientError, BotoCoreError) as exc:
            error = s3_error(exc, "AbortMultipartUpload", self.key)
            if error.code == "NoSuchUpload":  # completed after all, or aborted meanwhile
                self._ended()
            elif isinstance(error, NotSupported):
                if not _abort_unsupported_logged:  # a limitation of the store: say it once
                    _abort_unsupported_logged = True
                    logger.warning(
                        "the S3 store does not implement AbortMultipartUpload (%s): parts of "
                        "failed uploads stay until the store expires them",
                        error.code,
                    )
            else:  # left in the tracker: the stale-upload sweep tries again
                logger.warning("could not abort multipart upload of %s: %s", self.key, error.code)
            return
        self._ended()

    # --- internals ---

    def _ended(self) -> None:
        if self.tracker is not None:
            self.tracker.ended(self.key, self.upload_id)

    def _submit(self, part: _Pending) -> None:
        self.check()
        while len(self._in_flight) >= self.concurrency:  # backpressure
            done, _ = wait(list(self._in_flight), return_when=FIRST_COMPLETED)
            self._collect(done)
        if self._numbered >= MAX_PARTS:
            raise StorageError(self.key, "UploadPart", "TooManyParts")
        self._numbered += 1
        part.number = self._numbered
        self._run(part)

    def _run(self, part: _Pending) -> None:
        future: _Part = self._pool.submit(part.call, part.number, *part.args)
        self._in_flight[future] = part
        future.add_done_callback(self._watch)

    def _watch(self, future: _Part) -> None:
        if not future.cancelled() and future.exception() is not None:
            self._failed.set()

    def _collect(self, done: Iterable[_Part]) -> None:
        for future in done:
            pending = self._in_flight.pop(future)
            try:
                part = future.result()
            except StorageError as exc:
                if not exc.retryable or pending.attempt >= self.part_attempts:
                    raise
                # The store had a moment of trouble: send this part again, keep the others.
                # Botocore already retried it: pause as ``UPLOAD_PART`` says (0.5 s, 1 s ...).
                time.sleep(UPLOAD_PART.delay(pending.attempt - 1))
                pending.attempt += 1
                self.retried_parts += 1
                self._run(pending)
                continue
            self._parts.append(part)
            body = pending.body
            if body is not None and len(body) == self.part_size:
                self._spare.append(body)

    def _upload_part(self, number: int, body: bytearray) -> CompletedPartTypeDef:
        check: dict[str, str]
        if self.checksum:
            digest = hashlib.sha256(body).digest()
            self._digests[number] = digest
            check = {"ChecksumSHA256": base64.b64encode(digest).decode()}
        else:
            check = {"ContentMD5": content_md5(body)}
        with s3_call("UploadPart", self.key):
            resp = self.client.upload_part(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=number,
                # botocore takes a bytearray as a blob; passing it avoids copying the part.
                Body=body,  # type: ignore[arg-type]
                **check,  # type: ignore[arg-type]
            )
        part: CompletedPartTypeDef = {"PartNumber": number, "ETag": resp["ETag"]}
        if self.checksum:
            part["ChecksumSHA256"] = check["ChecksumSHA256"]
        return part
