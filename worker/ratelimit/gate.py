"""The contract between the client and the limiter: every provider call passes a ``RateGate``.

The client calls ``acquire`` before *every* HTTP attempt (retries included) and reports
each outcome with ``feedback`` so an adaptive limiter can slow down on ``Throttling.*``,
with the time the request left (``sent_at``) so it can learn the gap between its grants
and the requests they admit.
The real implementation is ``RedisRateLimiter``; ``UnlimitedGate`` is for tools and tests
that talk to an emulator without quotas.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from worker.errors import IdvError


class Lane(StrEnum):
    """Who is waiting: earliest deadline first across lanes, bulk takes what is left."""

    REALTIME = "realtime"  # onboarding: minutes
    ARCHIVAL = "archival"  # scheduled sweeps: days
    BULK = "bulk"  # batch OCR backlogs: hours


@dataclass(frozen=True, slots=True)
class CallContext:
    """Carried by a task down to the limiter: its lane and its deadline (epoch seconds)."""

    lane: Lane = Lane.REALTIME
    deadline: float | None = None


class GateError(IdvError):
    """Base of the limiter's own errors (never a provider error)."""


class DeadlineUnreachable(GateError):
    """The earliest slot starts after the caller's deadline; nothing was reserved."""

    default_code = "DeadlineUnreachable"

    def __init__(self, bucket: str, deadline: float, earliest: float) -> None:
        self.bucket = bucket
        self.deadline = deadline
        self.earliest = earliest
        super().__init__(
            f"{bucket}: earliest slot at {earliest:.3f} is after the deadline {deadline:.3f}"
        )


class MaxWaitExceeded(DeadlineUnreachable):
    """The slot would start after the limiter's bounded wait; nothing was reserved.

    ``deadline`` is the end of the bounded wait. Unlike a missed deadline the work is still
    worth doing: retry it later (around ``earliest``) instead of giving it up.
    """

    default_code = "MaxWaitExceeded"
    retryable = True

    def __init__(self, bucket: str, deadline: float, earliest: float) -> None:
        super().__init__(bucket, deadline, earliest)
        # Come back around the earliest slot the limiter could offer.
        self.retry_after = max(0.0, earliest - time.time())


class GateUnavailable(GateError):
    """The limiter's store cannot be reached: fail closed, make no call."""

    default_code = "GateUnavailable"
    retryable = True

    def __init__(self, bucket: str, reason: str) -> None:
        self.bucket = bucket
        self.reason = reason
        super().__init__(f"{bucket}: rate limiter unavailable ({reason}); no call was made")


class RateGate(Protocol):
    def acquire(self, product_code: str, api: str, ctx: CallContext) -> None:
        """Block until this caller's slot starts.

        Raises ``DeadlineUnreachable`` (slot after the deadline) or ``GateUnavailable``.
        """

    def feedback(
        self, product_code: str, api: str, *, throttled: bool, sent_at: float | None = None
    ) -> None:
        """Report an attempt's outcome (``throttled`` = provider answered ``Throttling.*``).

        ``sent_at``: ``time.monotonic()`` when the request's first bytes left (None when
        unknown), for the attempt the last ``acquire`` of this thread admitted.
        """


class UnlimitedGate:
    """A gate that never waits (for the emulator's own tools and for unit tests)."""

    def acquire(self, product_code: str, api: str, ctx: CallContext) -> None:
        return None

    def feedback(
        self, product_code: str, api: str, *, throttled: bool, sent_at: float | None = None
    ) -> None:
        return None
