"""The production client for cloudauth-intl 2022-08-09: CheckResult, DocOcrV2, Initialize.

One pooled ``httpx.Client`` per ``CloudAuthClient``; requests are signed per attempt exactly as
the official SDK signs them (ACS3-HMAC-SHA256, or legacy HMAC-SHA1 RPC when
``settings.signature_scheme == "rpc"``). Every attempt - retries included - first takes a slot
from the ``RateGate`` and then reports back to it.

Retries - throttling and transient errors, and one re-signed retry - follow the policy of
``worker.cloudauth.retries``, with a fresh date and nonce each time; a wait the provider asks
for (``x-acs-retry-after``) is capped by ``IDV_MAX_RETRY_AFTER_S`` and the call's deadline.
A billed call (DocOcrV2) whose first attempt may have been processed - read timeout, broken,
oversized or malformed reply - is never repeated: the ``TransientError`` is raised with
``maybe_processed=True`` and ``retryable=False`` for the task to decide; an idempotent call
(CheckResult, Initialize) is retried. Replies are read in bounded memory, decoded and checked
against the models by ``worker.cloudauth.responses`` inside the attempt, so a malformed success
counts as a failed attempt.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import partial
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from worker import __version__
from worker.cloudauth import API_VERSION
from worker.cloudauth.errors import (
    CloudAuthError,
    ThrottledError,
)
from worker.cloudauth.models import (
    CheckResultResult,
    DocOcrResult,
    InitializeResult,
    ResultModel,
)
from worker.cloudauth.params import check_result_call, doc_ocr_v2_call, initialize_call
from worker.cloudauth.placement import ApiCall
from worker.cloudauth.responses import parse_result, read_body, success_body, transport_error
from worker.cloudauth.retries import Attempts, Backoff, Clock, Retries
from worker.cloudauth.signing import (
    Credentials,
    EncodedBody,
    SignedRequest,
    encode_form_body,
    new_nonce,
    sign_acs3_request,
    sign_rpc_request,
    utc_timestamp,
)
from worker.ratelimit import CallContext, DeadlineUnreachable, RateGate, UnlimitedGate
from worker.settings import ProviderSettings

log = logging.getLogger(__name__)

USER_AGENT = f"idv-worker/{__version__}"

# Backoff and Clock (now in ``retries``) stay importable from here.
__all__ = ["USER_AGENT", "Backoff", "Clock", "CloudAuthClient"]

_T = TypeVar("_T")
_R = TypeVar("_R", bound=ResultModel)


class CloudAuthClient:
    """Client for CheckResult, DocOcrV2 and Initialize; use as a context manager or ``close()``.

    ``transport`` replaces the network (``httpx.MockTransport`` in tests); ``clock`` and
    ``nonce_factory`` fix time and nonces (tests, signature checks); ``backoff`` tunes retries.
    """

    def __init__(
        self,
        settings: ProviderSettings,
        *,
        gate: RateGate | None = None,
        transport: httpx.BaseTransport | None = None,
        max_attempts: int = 3,
        backoff: Backoff | None = None,
        clock: Clock | None = None,
        nonce_factory: Callable[[], str] | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        url = httpx.URL(settings.endpoint)
        if url.path not in ("", "/") or url.query:
            raise ValueError("settings.endpoint must be a base URL without path or query")
        self._settings = settings
        self._gate: RateGate = gate if gate is not None else UnlimitedGate()
        self._clock = clock or Clock()
        self._retries = Retries(
            max_attempts,
            backoff or Backoff(),
            self._clock,
            max_retry_after=settings.max_retry_after_s,
        )
        self._max_bytes = settings.max_response_bytes
        self._max_depth = settings.max_response_depth
        self._nonce = nonce_factory or new_nonce
        self._credentials = Credentials(
            settings.access_key_id,
            settings.access_key_secret.get_secret_value(),
            settings.security_token.get_secret_value() if settings.security_token else None,
        )
        self._host = url.netloc.decode("ascii")
        self._base_url = f"{url.scheme}://{self._host}/"
        self._rpc = settings.signature_scheme == "rpc"
        self._connect_timeout = settings.connect_timeout
        self._read_timeout = settings.read_timeout
        limits = httpx.Limits(
            max_connections=settings.max_connections,
            max_keepalive_connections=settings.max_connections,
        )
        self._http = httpx.Client(
            transport=transport,
            limits=limits,
            timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
        )

    # --- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- operations --------------------------------------------------------------------

    def check_result(
        self,
        *,
        transaction_id: str,
        merchant_biz_id: str,
        product_code: str,
        is_return_image: bool = False,
        ctx: CallContext | None = None,
    ) -> CheckResultResult:
        """Fetch a transaction's result; ``product_code`` (the flow's product) picks the quota."""
        call = check_result_call(
            transaction_id=transaction_id,
            merchant_biz_id=merchant_biz_id,
            product_code=product_code,
            is_return_image=is_return_image,
        )
        return self._send(call, ctx, self._parser(CheckResultResult, call))

    def doc_ocr_v2(
        self,
        *,
        merchant_biz_id: str,
        merchant_user_id: str,
        doc_type: str,
        image_base64: str | None = None,
        image_url: str | None = None,
        card_side: str | None = None,
        spoof: bool = False,
        face_quality: bool = False,
        id_threshold: str | None = None,
        ocr: bool = True,
        product_code: str = "ID_OCR_MIN",
        scene_code: str | None = None,
        ctx: CallContext | None = None,
    ) -> DocOcrResult:
        """OCR and anti-spoofing of one document image (billed per call)."""
        call = doc_ocr_v2_call(
            merchant_biz_id=merchant_biz_id,
            merchant_user_id=merchant_user_id,
            doc_type=doc_type,
            image_base64=image_base64,
            image_url=image_url,
            card_side=card_side,
            spoof=spoof,
            face_quality=face_quality,
            id_threshold=id_threshold,
            ocr=ocr,
            product_code=product_code,
            scene_code=scene_code,
        )
        return self._send(call, ctx, self._parser(DocOcrResult, call))

    def initialize(
        self,
        *,
        product_code: str,
        merchant_biz_id: str,
        merchant_user_id: str,
        meta_info: str | None = None,
        doc_type: str | None = None,
        callback_url: str | None = None,
        callback_token: str | None = None,
        return_url: str | None = None,
        scene_code: str | None = None,
        extra: Mapping[str, str] | None = None,
        ctx: CallContext | None = None,
    ) -> InitializeResult:
        """Start a verification flow; ``extra`` passes other Initialize fields by wire name."""
        call = initialize_call(
            product_code=product_code,
            merchant_biz_id=merchant_biz_id,
            merchant_user_id=merchant_user_id,
            meta_info=meta_info,
            doc_type=doc_type,
            callback_url=callback_url,
            callback_token=callback_token,
            return_url=return_url,
            scene_code=scene_code,
            extra=extra,
        )
        return self._send(call, ctx, self._parser(InitializeResult, call))

    # --- the request path --------------------------------------------------------------

    def send(self, call: ApiCall, *, ctx: CallContext | None = None) -> dict[str, Any]:
        """Send a prepared call with gate, retries and classification; return the success body.

        Low level: no argument validation happens here (the typed methods validate first).
        """
        return self._send(call, ctx, lambda body: body)

    def _parser(self, model: type[_R], call: ApiCall) -> Callable[[dict[str, Any]], _R]:
        return partial(
            parse_result, model, call.action, billed=not call.repeatable, max_depth=self._max_depth
        )

    def _send(
        self, call: ApiCall, ctx: CallContext | None, parse: Callable[[dict[str, Any]], _T]
    ) -> _T:
        ctx = ctx or CallContext()
        state = Attempts()
        # Encode and hash the body (an image may be 1 MB) once, before any slot is taken:
        # between the limiter's grant and the request only the cheap header signature runs.
        encoded = None if self._rpc or call.body is None else encode_form_body(call.body)
        while True:
            self._retries.before_attempt(call, ctx, state)
            try:
                self._gate.acquire(call.product_code, call.action, ctx)
            except DeadlineUnreachable as exc:
                # A retry that cannot start in time: the provider's answer is what matters.
                if state.last is not None:
                    raise state.last from exc
                raise
            state.count += 1
            sent: list[float] = []
            try:
                parsed = parse(self._attempt(call, ctx, encoded, sent))
            except CloudAuthError as exc:
                throttled = isinstance(exc, ThrottledError)
                self._gate.feedback(
                    call.product_code,
                    call.action,
                    throttled=throttled,
                    sent_at=sent[0] if sent else None,
                )
                log.debug(
                    "cloudauth %s attempt %d failed: %s %s (request %s)",
                    call.action,
                    state.count,
                    exc.status,
                    exc.code,
                    exc.request_id,
                )
                if not self._retries.should_retry(call, exc, state):
                    raise
                state.last = exc
                continue
            self._gate.feedback(
                call.product_code, call.action, throttled=False, sent_at=sent[0] if sent else None
            )
            return parsed

    def _timeout(self, ctx: CallContext) -> httpx.Timeout:
        connect, read = self._connect_timeout, self._read_timeout
        if ctx.deadline is not None:
            # An attempt may not outlive the caller's deadline.
            remaining = max(ctx.deadline - self._clock.now(), 0.001)
            connect, read = min(connect, remaining), min(read, remaining)
        return httpx.Timeout(read, connect=connect)

    def sign(self, call: ApiCall, encoded: EncodedBody | None = None) -> SignedRequest:
        """Sign ``call`` with a fresh date and nonce (one per attempt)."""
        date = utc_timestamp(datetime.fromtimestamp(self._clock.now(), UTC))
        if self._rpc:
            return sign_rpc_request(
                credentials=self._credentials,
                host=self._host,
                action=call.action,
                version=API_VERSION,
                query=call.query,
                body=call.body,
                user_agent=USER_AGENT,
                nonce=self._nonce(),
                timestamp=date,
            )
        return sign_acs3_request(
            credentials=self._credentials,
            host=self._host,
            action=call.action,
            version=API_VERSION,
            query=call.query,
            body=encoded if encoded is not None else call.body,
            user_agent=USER_AGENT,
            nonce=self._nonce(),
            date=date,
        )

    def _attempt(
        self, call: ApiCall, ctx: CallContext, encoded: EncodedBody | None, sent: list[float]
    ) -> dict[str, Any]:
        """One signed request; ``sent`` receives ``time.monotonic()`` when it left."""
        signed = self.sign(call, encoded)
        url = self._base_url + ("?" + signed.query_string if signed.query_string else "")
        request = self._http.build_request(
            "POST",
            url,
            content=signed.body,
            headers=signed.headers,
            timeout=self._timeout(ctx),
        )
        billed = not call.repeatable
        request.extensions["trace"] = _sent_tracer(sent)
        try:
            response = self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise transport_error(call.action, exc, billed=billed) from None
        try:
            content = read_body(call.action, response, max_bytes=self._max_bytes, billed=billed)
        finally:
            response.close()
        return success_body(
            call.action, response, content=content, max_depth=self._max_depth, billed=billed
        )


def _sent_tracer(sent: list[float]) -> Any:
    """An httpcore trace hook noting when the request's headers start to go out: after any
    connection set-up, so the limiter sees the real gap between its grant and the send.
    Transports without tracing (``MockTransport``) leave ``sent`` empty."""

    def trace(event: str, info: Any) -> None:
        if not sent and event.endswith("send_request_headers.started"):
            sent.append(time.monotonic())

    return trace
