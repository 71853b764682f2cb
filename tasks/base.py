"""One base class for every task: retries, dead letters, metrics and log context.

Tasks stay thin: parse the message, ask the runtime for one service, call it, and hand any
error to ``IdvTask.handle_error``, which applies the one rule of ``worker.errors``:

* ``error.retryable`` → retry after ``error.retry_after`` (capped by ``IDV_MAX_RETRY_AFTER_S``)
  or a jittered exponential backoff, as long as that stays within the work's deadline and the
  retry limit; else dead-letter;
* not retryable → dead-letter now, with the error's code and message;
* ``error.alert`` (account refused, configuration) → also a metric and a Sentry event;
* a ``ConfigurationError`` that ``stops_lane`` (the S3 store cannot work as configured) → the
  lane is paused too: every worker stops consuming the task's queue until an operator fixes
  the configuration and resumes it (``celery -A worker.app control add_consumer <queue>``, or
  a restart, whose start-up check refuses to run while the store is still misconfigured).

Errors that are not ``IdvError`` are retried a bounded number of times, then dead-lettered.
No countdown is longer than ``MAX_COUNTDOWN_S`` (below the broker's visibility timeout). A task
class names its ``retry_policy`` (``worker.backoff``): backoff base, cap and ``max_retries``.
A delayed retry message is only a hint: each flow also records the retry's due time where its
state lives (the ledger, the batch's takeover index), so a retry held by a node that dies runs
within a reconcile interval or a heartbeat of its due time (``retry_delay``).

A Redis that cannot be reached (a Sentinel failover, a restart) is waited for in the task: a
Redis connection error that escapes the task body runs the body again after a short jittered
pause, for up to ``REDIS_OUTAGE.within_s``. A retry message or a dead letter would need that
same Redis, and the body is idempotent (claims and leases in Redis decide what was done).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, NoReturn

import redis
from celery import Task
from celery.exceptions import Retry

from worker.backoff import REDIS_OUTAGE, TASK, RetryPolicy, jittered
from worker.errors import ConfigurationError, IdvError, error_code, is_retryable, retry_after
from worker.observability import account_code, get_logger, log_context, report_to_sentry
from worker.queues import MAX_COUNTDOWN_S
from worker.stores import LeaseBusy
from worker.wiring import WorkerNode, current_node

log = get_logger("tasks")


def retry_delay(retry: Retry) -> float:
    """How many seconds from now the retry ``retry`` is due."""
    when = retry.when
    if isinstance(when, datetime):
        return max(0.0, when.timestamp() - time.time())
    return float(when) if when is not None else 0.0


class DeadLettered(IdvError):
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
    retry_policy: ClassVar[RetryPolicy] = TASK
    max_retries = TASK.max_retries
    flow: ClassVar[str] = "generic"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.max_retries = cls.retry_policy.max_retries  # one bound per kind: its policy

    @property
    def node(self) -> WorkerNode:
        """This worker process's services (built by its first task)."""
        return current_node(self.app)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        outcome = "ok"
        with log_context(task=self.name, task_id=str(self.request.id or "-")):
            try:
                return self._call_through_outages(*args, **kwargs)
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
                metrics = self.node.metrics
                metrics.incr("idv_tasks", flow=self.flow, outcome=outcome)
                metrics.observe("idv_task_seconds", time.monotonic() - started, flow=self.flow)

    def _call_through_outages(self, *args: Any, **kwargs: Any) -> Any:
        assert REDIS_OUTAGE.within_s is not None
        deadline = time.monotonic() + REDIS_OUTAGE.within_s
        retries = 0
        while True:
            try:
                return super().__call__(*args, **kwargs)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                pause = REDIS_OUTAGE.delay(retries)
                retries += 1
                if time.monotonic() + pause > deadline:
                    raise
                log.warning(
                    "Redis unreachable (%s): the task runs again in %.1fs",
                    type(exc).__name__,
                    pause,
                )
                time.sleep(pause)

    # ------------------------------------------------------------ outcomes

    def backoff(self, attempt: int | None = None) -> float:
        """Jittered exponential backoff for the current attempt, capped below the broker timeout."""
        n = self.request.retries if attempt is None else attempt
        policy = self.retry_policy
        return jittered(n, base_s=policy.base_s, cap_s=min(MAX_COUNTDOWN_S, policy.cap_s))

    def countdown_for(self, exc: BaseException) -> float:
        """The backoff, or the wait the error asks for capped by ``IDV_MAX_RETRY_AFTER_S``."""
        wait = retry_after(exc, self.node.settings.provider.max_retry_after_s)
        return max(self.backoff(), wait or 0.0)

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

    def retry_in_ledger(
        self,
        exc: Exception,
        tid: str,
        *,
        kind: str,
        payload: Mapping[str, Any],
        deadline: float | None,
    ) -> NoReturn:
        """``handle_error`` for a ledger transaction: a retry is also a due time in the ledger.

        The reconciler re-drives it if the delayed message dies with this node. Not while
        another run holds the transaction's lease: that run owns its due time.
        """
        try:
            self.handle_error(exc, kind=kind, item_id=tid, payload=payload, deadline=deadline)
        except Retry as retry:
            if not isinstance(exc, LeaseBusy):
                grace = 2 * self.node.settings.ledger.heartbeat_every_s + 1.0
                self.node.ledger.due_again(tid, time.time() + retry_delay(retry) + grace)
            raise

    def dead_letter(
        self,
        kind: str,
        item_id: str,
        reason: str,
        *,
        code: str | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> NoReturn:
        self.node.deadletters.add(kind, item_id, reason, code=code, payload=payload)
        self.node.metrics.incr("idv_dead_letters", kind=kind.replace("/", "_"))
        log.warning("dead-lettered %s/%s: %s", kind, item_id, reason)
        raise DeadLettered(kind, item_id, reason)

    def pause_lane(self, code: str) -> None:
        """Tell every worker to stop consuming this task's queue (a broadcast, no reply)."""
        queue = (self.request.delivery_info or {}).get("routing_key")
        if not queue:
            return
        log.error(
            "lane %s paused by a configuration error (%s): fix it, then "
            "`celery -A worker.app control add_consumer %s`",
            queue,
            code,
            queue,
        )
        try:
            self.app.control.cancel_consumer(queue)
        except Exception as exc:  # the dead letter and the alert still go out
            log.warning("could not pause lane %s: %s", queue, type(exc).__name__)

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
        code = error_code(exc)
        if isinstance(exc, IdvError) and exc.alert:
            self.node.metrics.incr("idv_account_errors", flow=self.flow, code=account_code(code))
            report_to_sentry(
                "work stopped by an alerting error", flow=self.flow, code=code, kind=kind
            )
        if isinstance(exc, ConfigurationError) and exc.stops_lane:
            self.pause_lane(code)
        if not is_retryable(exc):
            self.dead_letter(kind, item_id, str(exc), code=code, payload=payload)
        try:
            self.retry_later(exc, self.countdown_for(exc), deadline=deadline)
        except Retry:
            raise
        except Exception:
            what = "retries exhausted" if isinstance(exc, IdvError) else "unexpected error"
            self.dead_letter(kind, item_id, f"{what}: {exc}", code=code, payload=payload)
