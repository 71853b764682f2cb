"""Callback intake: token check, validation, de-duplication and enqueueing of provider callbacks.

The provider calls our ``CallbackUrl`` with an *unsigned* GET carrying ``transactionId``,
``passed``, ``subCode`` and the ``callbackToken`` chosen at ``Initialize``; it may send the same
callback several times. Nothing in it is trusted except the transaction id, and only after the
token matched: the truth comes from ``CheckResult``, which the worker calls, never the intake.

``CallbackIntake.submit`` is shared by the ASGI receiver (``worker.receiver``), the Python API
``worker.flows.submit_callback`` (for applications that already own a webhook endpoint) and
``idv-worker callbacks replay``. It:

1. checks the token in constant time against *every* configured token, or against the
   flow's own derived token (``worker.onboarding.tokens``: HMAC under
   ``IDV_CALLBACK_TOKEN_SECRET`` of the ``MerchantBizId`` the *ledger* stored for the
   transaction at ``Initialize`` — never the one the callback carries, which must equal it
   when given). A derived token for a transaction the ledger does not know is refused: 403,
   nothing written;
2. validates the parameters (clear messages; the offending value is never echoed);
3. asks the transaction ledger (``worker.ledger``) what the callback is: new work (accepted),
   a repeat (work in flight or done), or unknown (refused with ``IDV_CALLBACK_REQUIRE_KNOWN``;
   a static token may otherwise open at most ``IDV_CALLBACK_MAX_UNKNOWN`` entries for
   transactions never started through us, 503 above);
   a resent callback whose work is overdue is accepted again;
4. enqueues ``idv.onboarding.process`` with ``expires`` = the end of the evidence window;
5. marks the work due now if enqueueing failed, so the provider's resend is taken (and the
   reconciler re-drives it anyway).

Optional parameters a merchant may put into its own ``CallbackUrl``: ``productCode`` (which
product's CheckResult quota to use; default ``IDV_ONBOARDING_PRODUCT``) and ``merchantBizId``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import redis

from worker.errors import IdvError
from worker.jobs import WorkSender
from worker.jobs.onboarding import OnboardingJob, default_merchant_biz_id
from worker.keys import InvalidKeyError, parse_transaction_id
from worker.observability import Metrics, NullMetrics, get_logger
from worker.onboarding.tokens import matches_derived
from worker.settings import CallbackSettings, OnboardingSettings

log = get_logger("callbacks")

_PASSED = frozenset({"Y", "N"})
_SUB_CODE = re.compile(r"[0-9]{1,16}")
_MERCHANT_BIZ_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_PRODUCT_CODE = re.compile(r"[A-Za-z0-9_]{1,64}")

Params = Mapping[str, str] | Mapping[str, Sequence[str]] | Iterable[tuple[str, str]]


class CallbackRejected(IdvError):
    """A callback that is not taken: ``status`` is the HTTP answer, ``reason`` a safe message.

    ``outcome`` names the metric outcome (``forbidden``, ``invalid``, ``too_large``,
    ``unavailable``). The message never repeats a submitted value.
    """

    def __init__(self, status: int, outcome: str, reason: str) -> None:
        self.status = status
        self.outcome = outcome
        self.reason = reason
        self.retryable = status >= 500  # the store was unavailable: the provider sends again
        super().__init__(f"{status} {outcome}: {reason}")


@dataclass(frozen=True, slots=True)
class CallbackEvent:
    """A callback whose token matched and whose parameters are well formed."""

    transaction_id: str
    passed: str
    sub_code: str
    product_code: str
    merchant_biz_id: str


@dataclass(frozen=True, slots=True)
class Submission:
    """What happened to one callback: ``accepted`` (enqueued) or ``duplicate`` (ignored)."""

    status: Literal["accepted", "duplicate"]
    transaction_id: str
    task_id: str | None
    deadline: float


def flatten_params(params: Params) -> dict[str, str]:
    """One value per name; a name given twice with different values is rejected (400)."""
    items: Iterable[tuple[str, object]]
    items = params.items() if isinstance(params, Mapping) else params
    out: dict[str, str] = {}
    for name, value in items:
        values: list[object] = list(value) if isinstance(value, list | tuple) else [value]
        for v in values:
            if not isinstance(v, str):
                raise CallbackRejected(400, "invalid", f"parameter {name} must be a string")
            if name in out and out[name] != v:
                raise CallbackRejected(400, "invalid", f"parameter {name} given more than once")
            out[name] = v
    return out


class TokenChecker:
    """Constant-time comparison of a presented token against every configured token.

    Both sides are hashed first so the comparison runs over equal-length digests, and every
    token is compared (no early exit), so timing reveals neither which token matched nor how
    much of one did.
    """

    def __init__(self, tokens: Sequence[str]) -> None:
        self._digests = [hashlib.sha256(t.encode()).digest() for t in tokens if t]

    @property
    def configured(self) -> bool:
        return bool(self._digests)

    def matches(self, presented: str | None) -> bool:
        """Whether ``presented`` equals one of the configured tokens."""
        given = hashlib.sha256((presented or "").encode()).digest()
        ok = False
        for digest in self._digests:
            ok |= hmac.compare_digest(given, digest)
        return ok and presented is not None and presented != ""


def parse_callback(
    params: Mapping[str, str], *, default_product: str, known_product: Callable[[str], bool]
) -> CallbackEvent:
    """Validate the parameters of a callback whose token already matched."""
    tid = params.get("transactionId")
    if not tid:
        raise CallbackRejected(400, "invalid", "missing parameter transactionId")
    try:
        parse_transaction_id(tid, "transactionId")
    except InvalidKeyError as exc:
        raise CallbackRejected(400, "invalid", f"transactionId: {exc.reason}") from None

    passed = params.get("passed")
    if passed is None:
        raise CallbackRejected(400, "invalid", "missing parameter passed")
    if passed not in _PASSED:
        raise CallbackRejected(400, "invalid", "passed must be Y or N")

    sub_code = params.get("subCode")
    if sub_code is None:
        raise CallbackRejected(400, "invalid", "missing parameter subCode")
    if not _SUB_CODE.fullmatch(sub_code):
        raise CallbackRejected(400, "invalid", "subCode must be 1 to 16 digits")

    product = params.get("productCode") or default_product
    if not _PRODUCT_CODE.fullmatch(product) or not known_product(product):
        raise CallbackRejected(400, "invalid", "productCode is not a configured product")

    biz = params.get("merchantBizId")
    if biz is not None and not _MERCHANT_BIZ_ID.fullmatch(biz):
        raise CallbackRejected(400, "invalid", "merchantBizId must be 1 to 32 letters or digits")
    return CallbackEvent(
        transaction_id=tid,
        passed=passed,
        sub_code=sub_code,
        product_code=product,
        merchant_biz_id=biz or default_merchant_biz_id(tid),
    )


@dataclass(frozen=True, slots=True)
class _Authenticated:
    """How a callback proved itself: ``stored_biz_id`` is set when by a derived token."""

    stored_biz_id: str | None = None


class CallbackIntake:
    """Takes callbacks: check, validate, de-duplicate, enqueue (see the module docstring)."""

    def __init__(
        self,
        settings: CallbackSettings,
        ledger: CallbackLedger,
        sender: WorkSender,
        *,
        onboarding: OnboardingSettings,
        known_product: Callable[[str], bool],
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``known_product``: whether a product code has a quota (the callback names one)."""
        self.settings = settings
        self.onboarding = onboarding
        self._known_product = known_product
        self._ledger: CallbackLedger = ledger
        self._sender = sender
        self._metrics = metrics or NullMetrics()
        self._clock = clock
        self._tokens = TokenChecker([t.get_secret_value() for t in settings.callback_tokens])
        secret = settings.callback_token_secret
        self._secret = secret.get_secret_value() if secret is not None else None

    @property
    def tokens_configured(self) -> bool:
        return self._tokens.configured or bool(self._secret)

    def _authenticate(self, params: Mapping[str, str]) -> _Authenticated | None:
        """A static token, or the token derived from the ledger's MerchantBizId of the
        transaction; None when neither (the ledger is read, never written)."""
        presented = params.get("callbackToken")
        if self._tokens.matches(presented):
            return _Authenticated()
        tid = params.get("transactionId")
        if not self._secret or not presented or not tid:
            return None
        try:
            parse_transaction_id(tid, "transactionId")
            stored = self._ledger.merchant_biz_id_of(tid)
        except InvalidKeyError:
            return None
        except redis.RedisError as exc:
            raise CallbackRejected(503, "unavailable", "queue unavailable, retry later") from exc
        if stored is None or params.get("merchantBizId", stored) != stored:
            return None
        return _Authenticated(stored) if matches_derived(self._secret, stored, presented) else None

    def _checked(
        self, params: Params, *, verify_token: bool
    ) -> tuple[CallbackEvent, _Authenticated]:
        flat = flatten_params(params)
        # The token is checked before anything else so an unauthenticated caller learns
        # nothing about which parameters would have been accepted.
        auth = self._authenticate(flat) if verify_token else _Authenticated()
        if auth is None:
            raise CallbackRejected(403, "forbidden", "callbackToken does not match")
        event = parse_callback(
            flat,
            default_product=self.onboarding.onboarding_product,
            known_product=self._known_product,
        )
        return event, auth

    def check(self, params: Params, *, verify_token: bool = True) -> CallbackEvent:
        """Token and parameters; raises ``CallbackRejected`` (403 before 400, never both)."""
        return self._checked(params, verify_token=verify_token)[0]

    def submit(
        self,
        params: Params,
        *,
        received_at: float | None = None,
        verify_token: bool = True,
        force: bool = False,
    ) -> Submission:
        """Check, de-duplicate and enqueue one callback; the metric records the outcome.

        ``received_at`` (epoch seconds) stands for the completion time, from which the 30-minute
        evidence window runs; default now. ``force`` enqueues even a repeat (operators replaying
        events); the worker's own idempotency still prevents double work.
        """
        try:
            event, auth = self._checked(params, verify_token=verify_token)
            result = self._enqueue(event, auth, received_at, force=force)
        except CallbackRejected as exc:
            self._metrics.incr("idv_callbacks", outcome=exc.outcome)
            if exc.outcome == "forbidden":
                log.warning("callback refused: wrong or missing callbackToken")
            raise
        self._metrics.incr("idv_callbacks", outcome=result.status)
        return result

    def _enqueue(
        self, event: CallbackEvent, auth: _Authenticated, received_at: float | None, *, force: bool
    ) -> Submission:
        """The ledger decides: a repeat is a callback whose work is in flight or done."""
        completed_at = self._clock() if received_at is None else received_at
        tid = event.transaction_id
        try:
            verdict = self._ledger.on_callback(
                tid,
                event.product_code,
                event.merchant_biz_id,
                now=completed_at,
                stored_biz_id=auth.stored_biz_id,
                max_unknown=self.settings.callback_max_unknown,
            )
        except redis.RedisError as exc:
            raise CallbackRejected(503, "unavailable", "queue unavailable, retry later") from exc
        if verdict.status == "unknown" and auth.stored_biz_id is not None:
            # The entry the token was derived from went away (or changed) since it was read.
            raise CallbackRejected(403, "forbidden", "callbackToken does not match")
        if verdict.status == "unknown":
            raise CallbackRejected(403, "unknown", "transactionId was not started through us")
        if verdict.status == "full":
            log.warning("callback for an unknown transaction refused: IDV_CALLBACK_MAX_UNKNOWN")
            raise CallbackRejected(503, "unavailable", "too many unknown transactions, retry later")
        job = OnboardingJob(
            transaction_id=tid,
            # The ledger's ids came from Initialize; the callback's are only what it claims.
            product_code=verdict.product_code or event.product_code,
            merchant_biz_id=verdict.merchant_biz_id or event.merchant_biz_id,
            completed_at=verdict.completed_at or completed_at,
            window_s=self.onboarding.evidence_window_s,
            claimed_passed=event.passed,
            claimed_sub_code=event.sub_code,
        )
        if verdict.status == "duplicate" and not force:
            return Submission("duplicate", tid, None, job.deadline)
        ledger = self._ledger

        def overdue() -> None:
            # Due now: the provider's resend is taken, and the reconciler re-drives it anyway.
            try:
                ledger.redrive_now(tid)
            except redis.RedisError:
                log.error("could not mark transaction %s overdue after a failed enqueue", tid)

        return self._publish(job, str(uuid.uuid4()), on_failure=overdue)

    def _publish(
        self, job: OnboardingJob, task_id: str, *, on_failure: Callable[[], None]
    ) -> Submission:
        """Send the onboarding message; 503 (after ``on_failure``) if the broker refuses."""
        try:
            # Answer the provider quickly either way: it resends on a non-200 answer.
            self._sender.onboard(job, task_id=task_id, urgent=True)
        except Exception as exc:
            on_failure()
            raise CallbackRejected(503, "unavailable", "queue unavailable, retry later") from exc
        log.info("callback accepted transaction=%s", job.transaction_id)
        return Submission("accepted", job.transaction_id, task_id, job.deadline)


class CallbackLedger(Protocol):
    """What the intake asks of the transaction ledger (``worker.ledger.Ledger``)."""

    def merchant_biz_id_of(self, tid: str) -> str | None: ...

    def on_callback(
        self,
        tid: str,
        product_code: str,
        merchant_biz_id: str,
        *,
        now: float | None = None,
        stored_biz_id: str | None = None,
        max_unknown: int = 0,
    ) -> Any: ...

    def redrive_now(self, tid: str) -> None: ...
