"""The batch's provider client: every DocOcrV2 request claims its item as it leaves.

Exactly-once hinges on knowing, after a crash, whether an item's call may have reached the
provider. A marker written *before* the limiter wait would flag items that never left the
worker; one written *after* the call would miss calls whose answer was lost. So the claim is
taken inside the HTTP transport, after the limiter granted the slot and the request was signed,
immediately before its bytes are written:

* no claim                -> the provider never saw the item: it may be sent (again);
* a claim and a result    -> the worker died after the answer was stored: done;
* a claim, no result      -> the call may have been processed and billed: ``uncertain``,
  re-sent only on an explicit ``retry-failed --include-uncertain``.

The claim script also refuses the call if the batch was paused or cancelled while the item
waited for its slot, or if another worker already claimed the item: two workers can never
both send one item, whatever happened to their leases.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx

from worker.cloudauth.client import CloudAuthClient
from worker.cloudauth.params import DOC_OCR_V2
from worker.errors import IdvError
from worker.ratelimit import RateGate
from worker.settings import ProviderSettings

Claim = Callable[[], str]

_current_claim: contextvars.ContextVar[Claim | None] = contextvars.ContextVar(
    "idv_batch_claim", default=None
)


class ClaimRefused(IdvError):
    """The item must not be sent: ``reason`` is ``state:<state>``, ``status:<s>`` or ``claimed``."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"call not sent: {reason}")

    @property
    def batch_stopped(self) -> bool:
        """Whether the batch itself stopped (paused, cancelled) rather than this item."""
        return self.reason.startswith("state:")


@contextmanager
def claiming(claim: Claim) -> Iterator[None]:
    """Within the block, a DocOcrV2 request runs ``claim`` just before it is sent."""
    token = _current_claim.set(claim)
    try:
        yield
    finally:
        _current_claim.reset(token)


def _is_doc_ocr(request: httpx.Request) -> bool:
    action = request.headers.get("x-acs-action")
    if action is None:  # RPC signing carries the action in the query string
        action = request.url.params.get("Action")
    return bool(action == DOC_OCR_V2)


class ClaimingTransport(httpx.BaseTransport):
    """Wraps a transport; claims the current item (``claiming``) before a DocOcrV2 request."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        claim = _current_claim.get()
        if claim is not None and _is_doc_ocr(request):
            verdict = claim()
            if verdict != "ok":
                raise ClaimRefused(verdict)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def batch_client(
    settings: ProviderSettings, gate: RateGate, *, inner: httpx.BaseTransport | None = None
) -> CloudAuthClient:
    """A ``CloudAuthClient`` whose DocOcrV2 requests claim their item (see module docstring)."""
    if inner is None:
        limits = httpx.Limits(
            max_connections=settings.max_connections,
            max_keepalive_connections=settings.max_connections,
        )
        inner = httpx.HTTPTransport(limits=limits)
    return CloudAuthClient(settings, gate=gate, transport=ClaimingTransport(inner))
