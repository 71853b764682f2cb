"""One ``put_stream``: the source read in order, hashed, cut into parts and sent, in bounded memory.

A payload that fits in ``concurrency + 1`` parts is read whole first, so its SHA-256 is known
before it goes up and is written in the object's metadata (one PutObject up to one part, else
a multipart upload). A larger one streams: parts go up ``concurrency`` at a time while the
source is read. Its SHA-256, known only at the end, is *not* written onto the object (S3 could
only do that by copying the whole object onto itself); it is returned (``StoredObject.sha256``)
for the caller's records, and the store checks the bytes it received itself: each part carries
its own SHA-256 where the store supports checksums, and the object's composite checksum is
compared with the one computed here after completion.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import Protocol

from worker.storage.errors import IntegrityError
from worker.storage.multipart import MultipartUpload
from worker.storage.objects import SHA256_METADATA, StoredObject


class Sink(Protocol):
    """What a ``StreamPut`` needs from the store."""

    def start_multipart(
        self, key: str, content_type: str, meta: dict[str, str], part_size: int, concurrency: int
    ) -> MultipartUpload: ...

    def put_single(
        self, key: str, body: bytes | bytearray, content_type: str, meta: dict[str, str]
    ) -> None: ...

    def verify(
        self, key: str, size: int, digest: str, *, streamed: bool = False,
        composite: str | None = None,
    ) -> StoredObject: ...  # fmt: skip

    def delete_quietly(self, key: str) -> None: ...


class StreamPut:
    """The state of one streamed write (see the module docstring); ``run`` it once."""

    def __init__(
        self, sink: Sink, key: str, *, content_type: str, meta: dict[str, str], part_size: int,
        concurrency: int, expected_size: int | None, expected_sha256: str | None,
    ) -> None:  # fmt: skip
        self.sink = sink
        self.key = key
        self.content_type = content_type
        self.meta = meta
        self.part_size = part_size
        self.concurrency = concurrency
        self.expected_size = expected_size
        self.expected_sha256 = expected_sha256
        self.hasher = hashlib.sha256()
        self.buf = bytearray(part_size)  # the part being filled
        self.fill = 0
        self.size = 0
        # Full parts held back while the whole payload may still fit in the memory allowed.
        self.held: list[bytearray] = []
        self.upload: MultipartUpload | None = None
        self.visible = False  # the object may exist at the key (delete it on failure)

    def run(self, chunks: Iterable[bytes]) -> StoredObject:
        """Read ``chunks`` to the end, upload, verify; on any failure leave nothing behind."""
        source = iter(chunks)
        try:
            for chunk in source:
                self._take(chunk)
            return self._finish()
        except BaseException:
            self._clean_up(source)
            raise

    def _take(self, chunk: bytes) -> None:
        view = memoryview(chunk).cast("B")
        self.hasher.update(view)
        self.size += len(view)
        if self.expected_size is not None and self.size > self.expected_size:
            raise IntegrityError(self.key, "size", self.expected_size, f">={self.size}")
        if self.upload is not None:
            self.upload.check()  # a failed part stops the download now, not at the end
        pos = 0
        while pos < len(view):
            if self.fill == self.part_size:  # more bytes after a full part: hand it on
                self._hand_on()
            take = min(self.part_size - self.fill, len(view) - pos)
            self.buf[self.fill : self.fill + take] = view[pos : pos + take]
            self.fill += take
            pos += take

    def _hand_on(self) -> None:
        """Hold the full part while the payload may fit in memory, else start streaming."""
        if (
            self.upload is None
            and self.expected_sha256 is None
            and len(self.held) < self.concurrency
        ):
            self.held.append(self.buf)
            self.buf = bytearray(self.part_size)
        else:
            upload = self._upload()
            for part in (*self.held, self.buf):
                upload.send(part)  # waits while `concurrency` are in flight
            self.held.clear()
            self.buf = upload.buffer()
        self.fill = 0

    def _upload(self) -> MultipartUpload:
        if self.upload is None:
            self.upload = self.sink.start_multipart(
                self.key, self.content_type, self.meta, self.part_size, self.concurrency
            )
        return self.upload

    def _finish(self) -> StoredObject:
        digest = self.hasher.hexdigest()
        if self.expected_size is not None and self.size != self.expected_size:
            raise IntegrityError(self.key, "size", self.expected_size, self.size)
        if self.expected_sha256 is not None and digest != self.expected_sha256:
            raise IntegrityError(self.key, "sha256", self.expected_sha256, digest)
        del self.buf[self.fill :]
        streamed = self.upload is not None and self.expected_sha256 is None
        if not streamed:  # the hash is known before the object is created: in its metadata
            self.meta[SHA256_METADATA] = digest
        if self.upload is None and self.size <= self.part_size:
            self.visible = True
            self.sink.put_single(self.key, self.buf, self.content_type, self.meta)
            return self.sink.verify(self.key, self.size, digest)
        upload = self._upload()
        for part in (*self.held, self.buf):
            if part:
                upload.send(part)
        self.held.clear()
        upload.finish()
        self.visible = True
        upload.complete()
        composite = upload.composite_checksum() if streamed else None
        return self.sink.verify(self.key, self.size, digest, streamed=streamed, composite=composite)

    def _clean_up(self, source: Iterator[bytes]) -> None:
        if self.upload is not None:
            self.upload.abort()
        if self.visible:
            self.sink.delete_quietly(self.key)
        # Let a generator source release its download connection now, not at GC time.
        close = getattr(source, "close", None)
        if callable(close):
            close()
