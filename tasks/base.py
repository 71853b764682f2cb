"""One base class for every task: retries, dead letters, metrics and log context.

Tasks stay thin: parse the message, call one service, and hand any error to
``IdvTask.handle_error``, which decides between *retry later* and *dead-letter now*:

==========================================  ==============================================
error                                        outcome
==========================================  ==============================================
ThrottledError, TransientError,              retry with jittered exponential backoff, bounded
GateUnavailable                              by ``max_retries`` and the work's deadline
NotReadyError (``ProcessNotCompleted``)      retry with backoff until the deadline
MaxWaitExceeded                              retry around the earliest slot the limiter offered
DeadlineUnreachable                          dead-letter: the slot would come too late
PermanentError, RequestValidationError       dead-letter with the provider's code
TransientError with ``maybe_processed``      dead-letter: the call may have been billed
AccountError (``Forbidden.*``, credentials)  dead-letter, metric and alert: stop, don't retry
anything else                                retry (bounded), then dead-letter
==========================================  ==============================================

No countdown is longer than ``MAX_COUNTDOWN_S`` (below the broker's visibility timeout).
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from typing import Any, ClassVar, NoReturn

from celery import Task
from celery.exceptions import Retry

from worker.app import MAX_COUNTDOWN_S
from worker.cloudauth.errors import (
    AccountError,
    CloudAuthError,
    NotReadyError,
    PermanentError,
    ThrottledError,
    TransientError,
)
from worker.cloudauth.gate import DeadlineUnreachable, GateUnavailable, MaxWaitExceeded
from worker.observability import get_logger, log_context, report_to_sentry
from worker.runtime import Runtime, get_runtime

log = get_logger("tasks")


class DeadLettered(Exception):
    """Raised (and swallowed by the base class) after work was moved to the dead-letter store."""

    def __init__(self, kind: str, item_id: str, reason: str) -> None:
        self.kind = kind
        self.item_id = item_id
        self.reason = reason
        super().__init__(f"{kind}/{item_id} dead-lettered: {reason}")


class IdvTask(Task[Any, Any]):
    """Base of all idv tasks (``acks_late``; re-queued if the worker process dies)."""

    abstract = True
    acks_late = True
    reject_on_worker_lost = True
    max_retries = 10
    backoff_base_s: ClassVar[float] = 2.0
    flow: ClassVar[str] = "generic"

    @property
    def runtime(self) -> Runtime:
        return get_runtime()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        outcome = "ok"
        with log_context(task=self.name, task_id=str(self.request.id or "-")):
            try:
                return super().__call__(*args, **kwargs)
            except Retry:
                outcome = "retry"
                raise
            except DeadLettered:
                outcome = "dead_letter"
                return None
            except Exception:
                outcome = "error"
                raise
            finally:
                metrics = self.runtime.metrics
                metrics.incr("idv_tasks", flow=self.flow, outcome=outcome)
                metrics.observe("idv_task_seconds", time.monotonic() - started, flow=self.flow)

    # ------------------------------------------------------------ outcomes

    def backoff(self, attempt: int | None = None) -> float:
        """Jittered exponential backoff for the current attempt, capped below the broker timeout."""
        n = self.request.retries if attempt is None else attempt
        ceiling = min(MAX_COUNTDOWN_S, self.backoff_base_s * (2**n))
        return random.uniform(ceiling / 2, ceiling)

    def retry_later(
        self, exc: Exception, countdown: float, *, deadline: float | None = None
    ) -> NoReturn:
        """Retry after ``countdown`` seconds unless that would pass the deadline or retry limit."""
        countdown = max(0.05, min(countdown, MAX_COUNTDOWN_S))
        if deadline is not None and time.time() + countdown > deadline:
            raise exc
        if self.request.retries >= self.max_retries:
            raise exc
        raise self.retry(exc=exc, countdown=countdown, max_retries=self.max_retries)

    def dead_letter(
        self,
        kind: str,
        item_id: str,
        reason: str,
        *,
        code: str | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> NoReturn:
        self.runtime.deadletters.add(kind, item_id, reason, code=code, payload=payload)
        self.runtime.metrics.incr("idv_dead_letters", kind=kind.replace("/", "_"))
        log.warning("dead-lettered %s/%s: %s", kind, item_id, reason)
        raise DeadLettered(kind, item_id, reason)

    def handle_error(
        self,
        exc: Exception,
        *,
        kind: str,
        item_id: str,
        payload: Mapping[str, Any] | None = None,
        deadline: float | None = None,
    ) -> NoReturn:
        """Turn an error from a service into a retry or a dead letter (see module docstring)."""
        code = exc.code if isinstance(exc, CloudAuthError) else type(exc).__name__
        if isinstance(exc, AccountError):
            self.runtime.metrics.incr("idv_account_errors", flow=self.flow, code=_safe(code))
            report_to_sentry(
                "provider refused the account", flow=self.flow, code=_safe(code), kind=kind
            )
            self.dead_letter(kind, item_id, f"account error: {exc}", code=code, payload=payload)
        if isinstance(exc, DeadlineUnreachable) and not isinstance(exc, MaxWaitExceeded):
            self.dead_letter(kind, item_id, str(exc), code="DeadlineUnreachable", payload=payload)
        if isinstance(exc, PermanentError):
            self.dead_letter(kind, item_id, str(exc), code=code, payload=payload)
        if isinstance(exc, TransientError) and exc.maybe_processed:
            # The provider may have processed (and billed) the call; never repeat it blindly.
            self.dead_letter(
                kind, item_id, f"outcome unknown, not retried: {exc}", code=code, payload=payload
            )
        retryable = (
            ThrottledError,
            TransientError,
            GateUnavailable,
            NotReadyError,
            MaxWaitExceeded,
        )
        countdown = self.backoff()
        if isinstance(exc, MaxWaitExceeded):
            # Come back around the earliest slot the limiter could offer.
            countdown = max(countdown, exc.earliest - time.time())
        try:
            self.retry_later(exc, countdown, deadline=deadline)
        except Retry:
            raise
        except Exception:
            what = "retries exhausted" if isinstance(exc, retryable) else "unexpected error"
            self.dead_letter(kind, item_id, f"{what}: {exc}", code=code, payload=payload)


def _safe(code: str) -> str:
    return "".join(c for c in code if c.isalnum() or c in "._-")[:64] or "unknown"
