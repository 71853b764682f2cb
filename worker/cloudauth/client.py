"""The production client for cloudauth-intl 2022-08-09: CheckResult, DocOcrV2, Initialize.

One pooled ``httpx.Client`` per ``CloudAuthClient``; requests are signed per attempt exactly as
the official SDK signs them (ACS3-HMAC-SHA256, or legacy HMAC-SHA1 RPC when
``settings.signature_scheme == "rpc"``). Every attempt - retries included - first takes a slot
from the ``RateGate`` and then reports back to it.

Retries happen here only for ``ThrottledError`` and ``TransientError`` (jittered exponential
backoff, never past ``ctx.deadline``, fresh date and nonce each time), plus one re-signed retry
for ``SignatureNonceUsed`` / ``InvalidTimeStamp.Expired``. A billed call (DocOcrV2) whose first
attempt may have been processed - read timeout, broken or unparsable reply - is never repeated:
the ``TransientError`` is raised with ``maybe_processed=True`` for the task to decide.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
from pydantic import ValidationError

from worker import __version__
from worker.backoff import jittered
from worker.cloudauth import API_VERSION
from worker.cloudauth.errors import (
    CloudAuthError,
    CredentialsError,
    ThrottledError,
    TransientError,
    classify_response,
)
from worker.cloudauth.models import CheckResultResult, DocOcrResult, InitializeResult, ResultModel
from worker.cloudauth.params import (
    ApiCall,
    check_result_call,
    doc_ocr_v2_call,
    initialize_call,
)
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
from worker.settings import Settings

log = logging.getLogger(__name__)

USER_AGENT = f"idv-worker/{__version__}"

_R = TypeVar("_R", bound=ResultModel)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with equal jitter: retry n waits in ``[d/2, d]``, d = base * 2^(n-1)."""

    base: float = 0.1
    cap: float = 2.0

    def delay(self, retry: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        return jittered(retry - 1, base_s=self.base, cap_s=self.cap, rng=rng)


@dataclass(frozen=True, slots=True)
class Clock:
    """Wall clock (epoch seconds, the unit of ``CallContext.deadline``) and sleep."""

    now: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep


@dataclass(slots=True)
class _Attempts:
    """Per-call retry state."""

    last: CloudAuthError | None = None
    resigned: bool = False
    count: int = 0


class CloudAuthClient:
    """Client for CheckResult, DocOcrV2 and Initialize; use as a context manager or ``close()``.

    ``transport`` replaces the network (``httpx.MockTransport`` in tests); ``clock`` and
    ``nonce_factory`` fix time and nonces (tests, signature checks); ``backoff`` tunes retries.
    """

    def __init__(
        self,
        settings: Settings,
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
        self._max_attempts = max_attempts
        self._backoff = backoff or Backoff()
        self._clock = clock or Clock()
        self._nonce = nonce_factory or new_nonce
        self._rng = random.Random()
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
        return self._parse(CheckResultResult, call, self.send(call, ctx=ctx))

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
        )
        return self._parse(DocOcrResult, call, self.send(call, ctx=ctx))

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
            extra=extra,
        )
        return self._parse(InitializeResult, call, self.send(call, ctx=ctx))

    # --- the request path --------------------------------------------------------------

    def send(self, call: ApiCall, *, ctx: CallContext | None = None) -> dict[str, Any]:
        """Send a prepared call with gate, retries and classification; return the success body.

        Low level: no argument validation happens here (the typed methods validate first).
        """
        ctx = ctx or CallContext()
        state = _Attempts()
        # Encode and hash the body (an image may be 1 MB) once, before any slot is taken:
        # between the limiter's grant and the request only the cheap header signature runs.
        encoded = None if self._rpc or call.body is None else encode_form_body(call.body)
        while True:
            self._before_attempt(call, ctx, state)
            try:
                self._gate.acquire(call.product_code, call.action, ctx)
            except DeadlineUnreachable as exc:
                # A retry that cannot start in time: the provider's answer is what matters.
                if state.last is not None:
                    raise state.last from exc
                raise
            state.count += 1
            try:
                body = self._attempt(call, ctx, encoded)
            except CloudAuthError as exc:
                throttled = isinstance(exc, ThrottledError)
                self._gate.feedback(call.product_code, call.action, throttled=throttled)
                log.debug(
                    "cloudauth %s attempt %d failed: %s %s (request %s)",
                    call.action,
                    state.count,
                    exc.status,
                    exc.code,
                    exc.request_id,
                )
                if not self._should_retry(call, exc, state):
                    raise
                state.last = exc
                continue
            self._gate.feedback(call.product_code, call.action, throttled=False)
            return body

    def _should_retry(self, call: ApiCall, exc: CloudAuthError, state: _Attempts) -> bool:
        if state.count >= self._max_attempts:
            return False
        if isinstance(exc, ThrottledError):
            return True
        if isinstance(exc, TransientError):
            return call.repeatable or not exc.maybe_processed
        if isinstance(exc, CredentialsError) and exc.resign_may_help and not state.resigned:
            state.resigned = True
            return True
        return False

    def _before_attempt(self, call: ApiCall, ctx: CallContext, state: _Attempts) -> None:
        """Wait the backoff before a retry; give up instead if it would end past the deadline."""
        now = self._clock.now()
        last = state.last
        if last is not None:
            delay = self._backoff.delay(state.count, self._rng)
            if isinstance(last, ThrottledError) and last.retry_after:
                delay = max(delay, last.retry_after)
            if ctx.deadline is not None and now + delay >= ctx.deadline:
                raise last
            self._clock.sleep(delay)
            now = self._clock.now()
        if ctx.deadline is not None and now >= ctx.deadline:
            if last is not None:
                raise last
            raise DeadlineUnreachable(f"{call.product_code}:{call.action}", ctx.deadline, now)

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
        self, call: ApiCall, ctx: CallContext, encoded: EncodedBody | None
    ) -> dict[str, Any]:
        signed = self.sign(call, encoded)
        url = self._base_url + ("?" + signed.query_string if signed.query_string else "")
        request = self._http.build_request(
            "POST",
            url,
            content=signed.body,
            headers=signed.headers,
            timeout=self._timeout(ctx),
        )
        try:
            response = self._http.send(request)
        except httpx.HTTPError as exc:
            raise _transport_error(call.action, exc) from None
        return _success_body(call.action, response)

    def _parse(self, model: type[_R], call: ApiCall, body: dict[str, Any]) -> _R:
        try:
            return model.from_body(body)
        except ValidationError as exc:
            raise TransientError(
                f"unparsable {call.action} result ({exc.error_count()} field errors)",
                action=call.action,
                status=200,
                code="MalformedResponse",
                request_id=str(body.get("RequestId") or "") or None,
                maybe_processed=True,
            ) from None


# Transport failures that cannot have reached the provider's application.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.WriteError)


def _transport_error(action: str, exc: httpx.HTTPError) -> TransientError:
    """A transport failure as a ``TransientError`` (no URL or parameters in the message)."""
    kind = type(exc).__name__
    code = "HttpTimeout" if isinstance(exc, httpx.TimeoutException) else "HttpTransportError"
    return TransientError(
        f"{kind}: {exc}" if str(exc) else kind,
        action=action,
        code=code,
        maybe_processed=not isinstance(exc, _NOT_SENT),
    )


def _success_body(action: str, response: httpx.Response) -> dict[str, Any]:
    """The decoded body of a success reply; raise the classified error otherwise."""
    body: dict[str, Any] | None
    try:
        decoded = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        decoded = None
    body = decoded if isinstance(decoded, dict) else None
    status = response.status_code
    if 200 <= status < 300:
        if body is not None and body.get("Code") == "Success":
            if not body.get("RequestId") and "x-acs-request-id" in response.headers:
                body["RequestId"] = response.headers["x-acs-request-id"]
            return body
        if body is not None and not body.get("Code"):
            # The SDK maps only ``Code`` on success paths: anything else is not an answer.
            body = None
    raise classify_response(action=action, status=status, body=body, headers=response.headers)
