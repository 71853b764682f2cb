"""Per-client limits of the receiver: rejected requests per address, and a connection whose
request head does not arrive in time (slowloris)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

# The largest request head (request line, header fields and the blank line that ends them).
MAX_HEADER_BYTES = 16 * 1024
_HEAD_END = b"\r\n\r\n"
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\n"
    b"content-length: 32\r\nconnection: close\r\n\r\nrequest header fields too large\n"
)
MAX_TRACKED_ADDRESSES = 10_000


class RejectLimiter:
    """Rejected callbacks per client address in a sliding window (in process, bounded)."""

    def __init__(
        self, limit: int, window_s: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque[float] | None:
        hits = self._hits.get(address)
        if hits is None:
            return None
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        if not hits:
            del self._hits[address]
            return None
        return hits

    def blocked(self, address: str) -> bool:
        """Whether ``address`` used up its rejections in the window."""
        with self._lock:
            hits = self._recent(address, self._clock())
            return hits is not None and len(hits) >= self.limit

    def rejected(self, address: str) -> None:
        """Count one rejected request of ``address``."""
        with self._lock:
            now = self._clock()
            hits = self._recent(address, now)
            if hits is None:
                hits = self._hits[address] = deque(maxlen=self.limit)
                while len(self._hits) > MAX_TRACKED_ADDRESSES:
                    self._hits.popitem(last=False)
            hits.append(now)
            self._hits.move_to_end(address)


def guarded_h11_protocol(
    read_timeout_s: float, max_head_bytes: int = MAX_HEADER_BYTES
) -> type[Any]:
    """uvicorn's h11 protocol, closing a connection whose request headers take too long or
    are too large.

    uvicorn bounds idle keep-alive connections but not a request that stops half-way through
    its headers (slowloris); this arms a timer when the connection opens and after every
    response, and closes the connection if no complete request head arrived by then. A
    request whose head arrived is bounded by the app's body read timeout instead.

    h11's ``max_incomplete_event_size`` bounds only a head still *incomplete* in its buffer:
    one that arrives whole in a read (uvicorn reads 64 KiB at a time) passes at any size. So
    the head's bytes are counted here as they arrive: a head longer than ``max_head_bytes``
    (request line, fields and the blank line) is answered 431 and the connection closed.
    """
    # uvicorn is imported only by the process that serves: tools that read this module do not
    # pay for it.
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._head: bytes | None = b""  # None: this request's head is complete
            self._arm_head_timer()

        def data_received(self, data: bytes) -> None:
            head = getattr(self, "_head", None)
            if head is not None:
                head += data
                end = head.find(_HEAD_END)
                size = len(head) if end < 0 else end + len(_HEAD_END)
                if size > max_head_bytes:
                    self._head = None
                    if not self.transport.is_closing():
                        self.transport.write(_TOO_LARGE)
                        self.transport.close()
                    return
                self._head = head if end < 0 else None
            super().data_received(data)

        def _arm_head_timer(self) -> None:
            timer = getattr(self, "_head_timer", None)
            if timer is not None:
                timer.cancel()
            self._head_timer = self.loop.call_later(read_timeout_s, self._head_timeout)

        def _head_timeout(self) -> None:
            waiting = self.cycle is None or self.cycle.response_complete
            if waiting and not self.transport.is_closing():
                self.transport.close()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._head = b""  # the next request's head is counted afresh
            self._arm_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            timer = getattr(self, "_head_timer", None)
            if timer is not None:
                timer.cancel()
            super().connection_lost(exc)

    return GuardedH11Protocol
