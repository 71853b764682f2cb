"""Retries of one call: which errors are retried, and how long to wait before the next try.

Retries happen only for ``ThrottledError`` and ``TransientError`` (jittered exponential
backoff, never past ``ctx.deadline``), plus one re-signed retry for ``SignatureNonceUsed`` /
``InvalidTimeStamp.Expired``. A call that is not ``repeatable`` (DocOcrV2, billed) whose attempt
may have been processed is never repeated. A wait the provider asks for (``x-acs-retry-after``)
is capped by ``max_retry_after`` (``IDV_MAX_RETRY_AFTER_S``); a wait that would end past the
deadline is not slept at all: the last error is raised.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from worker.backoff import PROVIDER_CALL, jittered
from worker.cloudauth.errors import CloudAuthError, CredentialsError, ThrottledError, TransientError
from worker.cloudauth.placement import ApiCall
from worker.ratelimit import CallContext, DeadlineUnreachable


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with equal jitter: retry n waits in ``[d/2, d]``, d = base * 2^(n-1)."""

    base: float = PROVIDER_CALL.base_s
    cap: float = PROVIDER_CALL.cap_s

    def delay(self, retry: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        return jittered(retry - 1, base_s=self.base, cap_s=self.cap, rng=rng)


@dataclass(frozen=True, slots=True)
class Clock:
    """Wall clock (epoch seconds, the unit of ``CallContext.deadline``) and sleep."""

    now: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep


@dataclass(slots=True)
class Attempts:
    """Per-call retry state."""

    last: CloudAuthError | None = None
    resigned: bool = False
    count: int = 0


@dataclass(slots=True)
class Retries:
    """The retry policy of a client: attempts at most, backoff, clock."""

    max_attempts: int
    backoff: Backoff
    clock: Clock
    rng: random.Random = field(default_factory=random.Random)
    max_retry_after: float = 60.0

    def should_retry(self, call: ApiCall, exc: CloudAuthError, state: Attempts) -> bool:
        """Whether ``exc``, met on attempt ``state.count``, is worth another attempt."""
        if state.count >= self.max_attempts:
            return False
        if isinstance(exc, ThrottledError):
            return True
        if isinstance(exc, TransientError):
            return call.repeatable or not exc.maybe_processed
        if isinstance(exc, CredentialsError) and exc.resign_may_help and not state.resigned:
            state.resigned = True
            return True
        return False

    def before_attempt(self, call: ApiCall, ctx: CallContext, state: Attempts) -> None:
        """Wait the backoff before a retry; give up instead if it would end past the deadline."""
        now = self.clock.now()
        last = state.last
        if last is not None:
            delay = self.backoff.delay(state.count, self.rng)
            if isinstance(last, ThrottledError) and last.retry_after:
                delay = max(delay, min(last.retry_after, self.max_retry_after))
            if ctx.deadline is not None and now + delay >= ctx.deadline:
                raise last
            self.clock.sleep(delay)
            now = self.clock.now()
        if ctx.deadline is not None and now >= ctx.deadline:
            if last is not None:
                raise last
            raise DeadlineUnreachable(f"{call.product_code}:{call.action}", ctx.deadline, now)
