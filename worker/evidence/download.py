"""Resumable download of one evidence video: Range resumes, fresh links, bounded read-ahead.

``ResumableDownload`` yields every byte of the video exactly once, in order, whatever happens
underneath: a broken transfer is resumed with ``Range: bytes=N-`` on the same link after a short
backoff (a server ignoring the range is read from the start and the bytes already delivered are
skipped); a dead link (403/404/410: expired or deleted) is replaced through ``fresh_link``.
``prefetch`` reads it in a helper thread a few chunks ahead so download and upload overlap.
The exceptions are described in ``worker.evidence``.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

import httpx

from worker.backoff import EVIDENCE_RESUME
from worker.errors import IdvError
from worker.keys import Evidence
from worker.observability import Metrics, NullMetrics

# A link the store refuses: expired signature (403), deleted object (404/410).
_DEAD_LINK = frozenset({401, 403, 404, 410})
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
# Resumes on the *same* link after a broken transfer before asking for a fresh one, and the
# pause before each (``EVIDENCE_RESUME``: 0.2 s, 0.4 s ...; a reset connection often recovers).
_RESUMES_PER_LINK: Final = EVIDENCE_RESUME.max_retries

FreshLink = Callable[[], str | None]
"""Returns a new ``docVideoUrl`` (by calling ``CheckResult``), or None if the provider has none."""


class EvidenceError(IdvError):
    """Base of evidence failures; the message holds ids and reasons only, never links."""

    def __init__(self, transaction_id: str, name: str, reason: str) -> None:
        self.transaction_id = transaction_id
        self.name = name
        self.reason = reason
        super().__init__(f"{name} of {transaction_id}: {reason}")


class EvidenceLost(EvidenceError):
    """No working link could be obtained before the deadline: the evidence is gone."""


class BadEvidence(EvidenceError):
    """The provider's evidence cannot be used (undecodable image, inconsistent ranges)."""


class EvidenceUnavailable(EvidenceError):
    """Transfers kept failing on every link while the window is still open: try again later."""

    retryable = True


class _LinkDead(Exception):
    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(f"HTTP {status}")


class _Broken(Exception):
    """The transfer stopped early (connection error, short body, 5xx)."""


@dataclass(frozen=True, slots=True)
class DownloadPolicy:
    """Read size, how many links one video may use, how often to call the heartbeat."""

    chunk_size: int = 256 * 1024
    max_links: int = 6
    heartbeat_every_s: float = 5.0


@dataclass(slots=True)
class Progress:
    """How a download went: links used (the first included) and resumes after breaks."""

    links_used: int = 0
    resumes: int = 0


class ResumableDownload:
    """The bytes of one video, continued across broken transfers and fresh links."""

    def __init__(
        self,
        http: httpx.Client,
        transaction_id: str,
        link: str | None,
        fresh_link: FreshLink,
        *,
        deadline: float | None,
        heartbeat: Callable[[], None] | None = None,
        policy: DownloadPolicy | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._http = http
        self._policy = policy or DownloadPolicy()
        self._metrics = metrics or NullMetrics()
        self._clock = clock
        self._sleep = sleep
        self._tid = transaction_id
        self._link = link
        self._fresh_link = fresh_link
        self._deadline = deadline
        self._heartbeat = heartbeat
        self._last_beat = clock()
        self._response: httpx.Response | None = None
        self._skip = 0
        self._same_link_failures = 0
        self._last_break_pos = 0
        self.pos = 0
        self.total: int | None = None
        self.progress = Progress(links_used=1 if link else 0)

    # --- links ---

    def _lost(self, reason: str) -> EvidenceLost:
        return EvidenceLost(self._tid, Evidence.VIDEO.value, reason)

    def _next_link(self, why: str) -> None:
        """Replace the current link by a fresh one from the provider, or raise EvidenceLost."""
        self._close()
        if self._deadline is not None and self._clock() >= self._deadline:
            raise self._lost(f"deadline passed ({why})")
        if self.progress.links_used >= self._policy.max_links:
            reason = f"{self.progress.links_used} links tried ({why})"
            if why == "broken":
                # Links were handed out but transfers broke: the host or the network is in
                # trouble, not the evidence. The task tries again while the window is open.
                raise EvidenceUnavailable(self._tid, Evidence.VIDEO.value, reason)
            raise self._lost(reason)
        self._metrics.incr("idv_evidence_refresh", reason=why)
        self._link = self._fresh_link()
        self.progress.links_used += 1
        self._same_link_failures = 0
        if not self._link:
            raise self._lost(f"provider has no link any more ({why})")

    def open(self) -> tuple[int | None, str]:
        """Open the first response; returns the total size (if known) and the content type."""
        if not self._link:
            self._next_link("missing")
        while True:
            try:
                response = self._request()
                break
            except _LinkDead:
                self._next_link("expired")
            except _Broken:
                self._after_break()
        content_type = response.headers.get("content-type", "video/webm").split(";")[0].strip()
        return self.total, content_type or "video/webm"

    def _request(self) -> httpx.Response:
        assert self._link
        headers = {"Accept-Encoding": "identity"}
        if self.pos:
            headers["Range"] = f"bytes={self.pos}-"
        try:
            request = self._http.build_request("GET", self._link, headers=headers)
            response = self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise _Broken(type(exc).__name__) from None
        status = response.status_code
        if status in _DEAD_LINK:
            response.close()
            raise _LinkDead(status)
        if status == 416 and self.total is not None and self.pos >= self.total:
            response.close()
            self._response = None
            return response
        if status == 206:
            self._check_range(response)
            self._skip = 0
        elif status == 200:
            length = response.headers.get("content-length")
            size = int(length) if length and length.isdigit() else None
            self._set_total(size)
            # The server ignored the range: read from the start, drop what is already stored.
            self._skip = self.pos
        else:
            response.close()
            raise _Broken(f"HTTP {status}")
        self._response = response
        return response

    def _check_range(self, response: httpx.Response) -> None:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
        if match is None or int(match.group(1)) != self.pos:
            response.close()
            raise BadEvidence(self._tid, Evidence.VIDEO.value, "unexpected Content-Range")
        total = match.group(3)
        self._set_total(int(total) if total != "*" else None)

    def _set_total(self, size: int | None) -> None:
        if size is None:
            return
        if self.total is None:
            self.total = size
        elif self.total != size:
            raise BadEvidence(self._tid, Evidence.VIDEO.value, "video size changed between links")

    def _after_break(self) -> None:
        self._close()
        self.progress.resumes += 1
        if self.pos > self._last_break_pos:
            # Bytes came through since the last break: the link works, keep resuming on it.
            self._same_link_failures = 0
        self._last_break_pos = self.pos
        self._same_link_failures += 1
        self._metrics.incr("idv_evidence_resumes", kind="video")
        if self._same_link_failures > _RESUMES_PER_LINK:
            self._next_link("broken")
            return
        pause = EVIDENCE_RESUME.delay(self._same_link_failures - 1)
        if self._deadline is not None:
            if self._clock() >= self._deadline:
                raise self._lost("deadline passed (broken)")
            pause = min(pause, max(0.0, self._deadline - self._clock()))
        self._sleep(pause)

    def _close(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None

    # --- bytes ---

    def chunks(self) -> Iterator[bytes]:
        """Every byte of the video once, in order; reconnects and resumes as needed."""
        try:
            while self.total is None or self.pos < self.total:
                if self._response is None:
                    try:
                        self._request()
                    except _LinkDead:
                        self._next_link("expired")
                        continue
                    except _Broken:
                        self._after_break()
                        continue
                    if self._response is None:  # 416 at the very end
                        break
                try:
                    yield from self._read_body()
                except _Broken:
                    self._after_break()
                    continue
                if self.total is None:
                    break  # no length announced: the first complete body is the video
        finally:
            self._close()

    def _read_body(self) -> Iterator[bytes]:
        response = self._response
        assert response is not None
        try:
            for raw in response.iter_raw(self._policy.chunk_size):
                if self._skip:
                    drop = min(self._skip, len(raw))
                    self._skip -= drop
                    raw = raw[drop:]
                    if not raw:
                        continue
                if self.total is not None and self.pos + len(raw) > self.total:
                    raise BadEvidence(self._tid, Evidence.VIDEO.value, "more bytes than announced")
                self.pos += len(raw)
                self._beat()
                yield raw
        except httpx.HTTPError as exc:
            raise _Broken(type(exc).__name__) from None
        finally:
            self._close()
        if self.total is not None and self.pos < self.total:
            raise _Broken("short body")

    def _beat(self) -> None:
        if self._heartbeat is None:
            return
        now = self._clock()
        if now - self._last_beat >= self._policy.heartbeat_every_s:
            self._last_beat = now
            self._heartbeat()


_DONE = object()


def prefetch(chunks: Iterator[bytes], depth: int) -> Iterator[bytes]:
    """Read ``chunks`` in a helper thread, ``depth`` ahead, so download and upload overlap.

    Memory stays bounded by ``depth`` chunks. An exception in the reader is re-raised in the
    consumer; when the consumer stops early (upload failed), the reader is told to stop.
    """
    slots: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def reader() -> None:
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        slots.put(chunk, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            slots.put(exc)
        finally:
            if stop.is_set() and hasattr(chunks, "close"):
                chunks.close()

    thread = threading.Thread(target=reader, name="evidence-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, bytes)
            yield item
    finally:
        stop.set()
        # Unblock a reader waiting on a full queue, then wait for it to leave.
        while thread.is_alive():
            try:
                slots.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
