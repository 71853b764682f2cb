"""The global, deadline-aware rate limiter: every provider call takes a slot from Redis.

The provider throttles each API of a product at a fixed QPS per account, counted over
1-second windows and shared by every process and host. ``RedisRateLimiter`` implements
``worker.ratelimit.gate.RateGate`` with one schedule per (product code, API) in Redis:

* **Evenly spaced slots.** A GCRA schedule: ``tat`` is the start of the next free slot,
  slots are ``1 / (quota * (1 - safety margin) * adaptive factor)`` apart, ``quota_burst``
  of them may be taken at once. Time is Redis ``TIME`` read inside the script (or passed in
  with ``clock=``), never the callers' clocks; callers only ever sleep *durations*.
* **Jitter room.** Q+1 consecutive grants span at least ``1 / (1 - margin)`` seconds less
  a lateness tolerance (a quarter of that room) that keeps the schedule rigid when a caller
  wakes slightly late; the other three quarters absorb the jitter between a grant and the
  provider counting the request. The margin is learned per bucket
  (``worker.ratelimit.margin``): widened by throttles, narrowed back by quiet periods, never
  below what the spread of the grant-to-send gaps the client reports needs, within
  ``IDV_QUOTA_MARGIN_FLOOR`` .. ``_CEILING``. After a second without grants a bucket
  restarts slowly (``AdaptivePolicy.restart``) since the first requests after a pause
  often open connections.
* **Reservation, not polling.** A caller that cannot go now is told when its turn comes,
  sleeps exactly that long in its own process and asks again; nothing blocks in Redis.
* **Earliest deadline first.** Waiting callers are ranked by (deadline, arrival); a caller
  is granted only when every caller with an earlier deadline has been served, so bulk work
  takes every slot nobody more urgent needs, and a realtime caller is delayed by bulk work
  already waiting by at most one slot interval. A slot that would start after the caller's
  deadline (or after its bounded wait) is refused at once and nothing is reserved.
* **Adaptive.** ``feedback(throttled=True)`` widens the margin; once the margin is at its
  ceiling (the account is used outside this system) it multiplies the bucket's rate down,
  at most once per hold period, and the rate recovers linearly afterwards. Margin and
  factor live in Redis, so every process adapts together; the ``idv_limiter_rate_factor``
  gauge ((1 - margin) x factor) and ``idv-worker quota status`` show them.
* **Fails closed.** If Redis cannot be reached no call is made: ``GateUnavailable``.

Default deadlines per lane when the caller gives none (``DEFAULT_HORIZONS``): realtime
30 minutes, archival 1 day, bulk 7 days from now. Deadlines are epoch seconds compared
with Redis time.

Exceptions (the first three from ``worker.ratelimit.gate``)::

    GateError
    ├── DeadlineUnreachable      the slot would start after the caller's deadline
    │   └── MaxWaitExceeded      ... or after the limiter's bounded wait (``max_wait``)
    └── GateUnavailable          Redis unreachable or failing: no call was made
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from worker.observability import Metrics, NullMetrics, get_logger
from worker.ratelimit.gate import (
    CallContext,
    DeadlineUnreachable,
    GateUnavailable,
    Lane,
    MaxWaitExceeded,
)
from worker.ratelimit.policies import AdaptivePolicy, MarginPolicy
from worker.ratelimit.quotas import QuotaTable
from worker.ratelimit.store import (
    STATE_TTL_MS,
    BucketKeys,
    bucket_keys,
)
from worker.redisio import connect, lua_script, number, redis_target, text
from worker.settings import RedisSettings

log = get_logger("ratelimit")

Clock = Callable[[], float]
Sleep = Callable[[float], None]

DEFAULT_HORIZONS: Mapping[Lane, float] = {
    Lane.REALTIME: 30 * 60.0,
    Lane.ARCHIVAL: 24 * 3600.0,
    Lane.BULK: 7 * 24 * 3600.0,
}
DEFAULT_MAX_WAIT = 60.0
# Share of the margin's room above one second that a late caller may use without the
# schedule slipping; the rest (three quarters: ~11 ms at a 1.5% margin) is left for the jitter
# between a grant and the provider's count of the request (see lua/prelude.lua).
LATENESS_SHARE = 0.25
# How early a waiter wakes to claim its slot (capped at a quarter interval by the script): it
# then sleeps until the slot itself, so a late wake-up no longer costs the schedule the slot.
EARLY_S = 0.001
# A silent waiter is dropped max(this, 2 slot intervals) after the time it was given.
MIN_GRACE = 0.1

_GRANTED, _WAIT, _PAST_DEADLINE, _PAST_MAX_WAIT = 1, 0, -1, -2

# Metric names (labels: bucket = "PRODUCT:Api", lane, reason). A histogram's _count is the
# number of grants, so the hot path writes one metric per acquire (deferred, see _defer_wait).
WAIT = "idv_limiter_wait_seconds"  # histogram: time from first ask to grant
REFUSED = "idv_limiter_refused"  # counter: deadline / max_wait
THROTTLED = "idv_limiter_throttled"  # counter: Throttling.* feedback
FACTOR = "idv_limiter_rate_factor"  # gauge: share of the quota in use, (1 - margin) x factor
UNAVAILABLE = "idv_limiter_unavailable"  # counter: Redis errors (failed closed)
METRICS = (WAIT, REFUSED, THROTTLED, FACTOR, UNAVAILABLE)


@dataclass(frozen=True, slots=True)
class Ticket:
    """Who is asking, kept across one caller's calls so its place in the queue holds.

    Empty strings mean "not assigned yet" (the script fills them in on the first call).
    """

    waiter_id: str
    seq: str = ""
    deadline: str = ""
    wait_limit: str = ""


@dataclass(frozen=True, slots=True)
class Reservation:
    """One answer of the store: granted now, or the time this caller's turn comes."""

    bucket: str
    granted: bool
    now: float  # Redis time of the answer
    slot_start: float  # granted: when to send (now, or the slot claimed early); waiting: turn
    wait_s: float  # waiting: how long until the turn; granted: until the slot (0: send now)
    deadline: float
    interval: float  # seconds between slots at the current effective rate
    factor: float  # adaptive factor in (0, 1]
    ticket: Ticket
    margin: float = 0.0  # the bucket's learned safety margin
    lateness: float = 0.0  # granted: how long after its slot this caller came (Redis time)


def _reason(exc: BaseException) -> str:
    # redis-py messages name host:port and the failure, never credentials.
    return f"{type(exc).__name__}: {exc}"[:200]


class RedisRateLimiter:
    """The ``RateGate`` of production: a global, deadline-aware limiter in Redis.

    ``RedisRateLimiter(redis, quotas, *, namespace, clock=None, sleep=time.sleep, max_wait=60.0,
    metrics=None, policy=None, horizons=None)``

    * ``redis``: a client, ideally with short socket timeouts and few retries so that a dead
      Redis fails fast (``limiter_redis()``). Keys are hash-tagged, so a ``RedisCluster``
      client works too (same methods; typed as ``redis.Redis`` only).
    * ``quotas``: QPS per bucket and the limiter's settings part (``quota_burst``,
      ``quota_safety_margin``, margins, longest wait); ``namespace``: the key prefix.
    * ``clock``: None reads Redis ``TIME`` inside the scripts; a callable (epoch seconds)
      passes the time in instead, for stores that reject ``TIME`` and for tests.
    * ``sleep``: how a caller waits for its turn (tests pair it with ``clock``).
    * ``max_wait``: bound on one ``acquire`` in seconds (default ``IDV_LIMITER_MAX_WAIT_S``);
      beyond it ``MaxWaitExceeded``.
    * ``metrics``: a ``worker.observability.Metrics`` (see ``METRICS``); ``policy``: an
      ``AdaptivePolicy``; ``horizons``: default deadline per lane, seconds from now;
      ``margin``: a ``MarginPolicy`` (default: from the settings).
    """

    def __init__(
        self,
        redis: redis.Redis,
        quotas: QuotaTable,
        *,
        namespace: str = "idv:",
        clock: Clock | None = None,
        sleep: Sleep = time.sleep,
        max_wait: float | None = None,
        metrics: Metrics | None = None,
        policy: AdaptivePolicy | None = None,
        horizons: Mapping[Lane, float] | None = None,
        margin: MarginPolicy | None = None,
    ) -> None:
        settings = quotas.settings
        if max_wait is None:
            max_wait = settings.limiter_max_wait_s
        if max_wait <= 0:
            raise ValueError("max_wait must be > 0")
        self._redis = redis
        self._settings = settings
        self.quotas = quotas
        self.namespace = namespace
        self._clock = clock
        self._sleep = sleep
        self.max_wait = max_wait
        self.metrics: Metrics = metrics if metrics is not None else NullMetrics()
        self.policy = policy if policy is not None else AdaptivePolicy()
        self.horizons = {**DEFAULT_HORIZONS, **(horizons or {})}
        self.margin = margin if margin is not None else MarginPolicy.from_settings(settings)
        self._margin_arg = self.margin.arg()
        self._gauged: dict[str, float] = {}
        self._acquire = redis.register_script(lua_script("worker.ratelimit", "acquire"))
        self._feedback = redis.register_script(lua_script("worker.ratelimit", "feedback"))
        self._keys: dict[tuple[str, str], BucketKeys] = {}
        self._local = threading.local()

    def keys(self, product_code: str, api: str) -> BucketKeys:
        """The Redis keys of one bucket (cached)."""
        found = self._keys.get((product_code, api))
        if found is None:
            found = bucket_keys(self.namespace, product_code, api)
            self._keys[(product_code, api)] = found
        return found

    def _now_arg(self) -> str:
        return "" if self._clock is None else f"{self._clock():.6f}"

    def reserve(
        self, product_code: str, api: str, ctx: CallContext, ticket: Ticket | None = None
    ) -> Reservation:
        """Ask once, without sleeping: granted now, or when to ask again.

        Pass the returned ``ticket`` back on the next call to keep the caller's place.
        Raises ``DeadlineUnreachable`` / ``MaxWaitExceeded`` (nothing reserved) or
        ``GateUnavailable``.
        """
        keys = self.keys(product_code, api)
        lane = Lane(ctx.lane)
        if ticket is None:
            ticket = Ticket(uuid.uuid4().hex[:16])
            if ctx.deadline is not None:
                ticket = Ticket(ticket.waiter_id, deadline=f"{ctx.deadline:.6f}")
        settings = self._settings
        args: list[str | float | int] = [
            self._now_arg(),
            repr(float(self.quotas.quota_for(product_code, api))),
            repr(float(settings.quota_safety_margin)),
            settings.quota_burst,
            ticket.deadline,
            repr(float(self.horizons[lane])),
            ticket.wait_limit,
            repr(float(self.max_wait)),
            lane.value,
            ticket.waiter_id,
            ticket.seq,
            repr(LATENESS_SHARE),
            repr(MIN_GRACE),
            repr(self.policy.hold_s),
            repr(self.policy.recovery_per_s),
            STATE_TTL_MS,
            repr(self.policy.restart),
            self._margin_arg,
            repr(EARLY_S),
        ]
        reply = self._call(self._acquire, keys, args)
        status = int(text(reply[0]))
        now, at = number(reply[1]), number(reply[2])
        ticket = Ticket(ticket.waiter_id, text(reply[5]), text(reply[3]), text(reply[4]))
        deadline, limit = number(reply[3]), number(reply[4])
        if status == _PAST_DEADLINE:
            self.metrics.incr(REFUSED, bucket=keys.bucket, lane=lane.value, reason="deadline")
            raise DeadlineUnreachable(keys.bucket, deadline, at)
        if status == _PAST_MAX_WAIT:
            self.metrics.incr(REFUSED, bucket=keys.bucket, lane=lane.value, reason="max_wait")
            raise MaxWaitExceeded(keys.bucket, limit, at)
        return Reservation(
            bucket=keys.bucket,
            granted=status == _GRANTED,
            now=now,
            slot_start=at,
            wait_s=max(0.0, at - now),
            deadline=deadline,
            interval=number(reply[7]),
            factor=number(reply[8]),
            ticket=ticket,
            margin=number(reply[9]),
            lateness=number(reply[10]),
        )

    def wait_for_slot(self, product_code: str, api: str, ctx: CallContext) -> Reservation:
        """Sleep until this caller's slot starts and return the granting answer."""
        self.flush_metrics()
        ticket: Ticket | None = None
        first: float | None = None
        done = False
        try:
            while True:
                asked = time.monotonic()
                res = self.reserve(product_code, api, ctx, ticket)
                ticket = res.ticket
                first = res.now if first is None else first
                if res.granted:
                    done = True
                    # The slot's start on this process's monotonic clock: the grant came
                    # about half-way through the round trip, ``lateness`` after the slot (or
                    # ``wait_s`` before it, claimed early: sleep until then).
                    slot = (asked + time.monotonic()) / 2 - res.lateness + res.wait_s
                    self._slots()[(product_code, api)] = slot
                    self._defer_wait(res.bucket, Lane(ctx.lane), res.slot_start - first)
                    if res.wait_s > 0:
                        self._sleep(res.wait_s)
                    return res
                self._sleep(max(0.0, res.wait_s - min(EARLY_S, res.interval / 4)))
        except (DeadlineUnreachable, GateUnavailable):
            done = True  # the script already unregistered us, or Redis is gone
            raise
        finally:
            if not done and ticket is not None:
                self._leave(product_code, api, ticket, Lane(ctx.lane))

    def acquire(self, product_code: str, api: str, ctx: CallContext) -> None:
        """Block until this caller's slot starts (``RateGate.acquire``)."""
        self.wait_for_slot(product_code, api, ctx)

    def feedback(
        self, product_code: str, api: str, *, throttled: bool, sent_at: float | None = None
    ) -> None:
        """Report an attempt's outcome; the bucket's margin (and rate) adapt for every process.

        ``sent_at`` (``time.monotonic()`` when the request left) gives the gap from the slot
        this thread was last granted in the bucket. Never raises: the call was already made,
        and a Redis failure here will surface as ``GateUnavailable`` on the next ``acquire``.
        """
        self.flush_metrics()
        slot = self._slots().pop((product_code, api), None)
        gap = None if sent_at is None or slot is None else max(0.0, sent_at - slot)
        if not throttled and gap is None:
            return
        keys = self.keys(product_code, api)
        policy = self.policy
        args: list[str | float | int] = [
            self._now_arg(),
            repr(policy.decrease),
            repr(policy.floor),
            repr(policy.hold_s),
            repr(policy.recovery_per_s),
            STATE_TTL_MS,
            "1" if throttled else "0",
            "" if gap is None else f"{gap:.6f}",
            self._margin_arg,
            repr(float(self._settings.quota_safety_margin)),
            repr(LATENESS_SHARE),
        ]
        try:
            reply = self._call(self._feedback, keys, args)
        except GateUnavailable as exc:
            log.warning("feedback for %s not recorded: %s", keys.bucket, exc.reason)
            return
        now, factor, margin = number(reply[0]), number(reply[1]), number(reply[2])
        if throttled:
            log.info(
                "%s throttled by the provider: margin now %.4f, rate factor %.3f",
                keys.bucket,
                margin,
                factor,
            )
            self.metrics.incr(THROTTLED, bucket=keys.bucket)
        # The gauge at most once a second per bucket and process (feedback comes per call).
        if throttled or now - self._gauged.get(keys.bucket, 0.0) >= 1.0:
            self._gauged[keys.bucket] = now
            self.metrics.gauge(FACTOR, (1 - margin) * factor, bucket=keys.bucket)

    def _slots(self) -> dict[tuple[str, str], float]:
        slots: dict[tuple[str, str], float] | None = getattr(self._local, "slots", None)
        if slots is None:
            slots = self._local.slots = {}
        return slots

    def _defer_wait(self, bucket: str, lane: Lane, waited: float) -> None:
        # Metrics may cost a Redis round trip: never between a grant and the request it
        # admits (that delay eats the margin's jitter room). Sent by the next feedback or
        # acquire of this thread instead.
        pending: list[tuple[str, str, float]] = getattr(self._local, "pending", [])
        pending.append((bucket, lane.value, waited))
        self._local.pending = pending

    def flush_metrics(self) -> None:
        """Send the wait observations deferred by this thread's last grants."""
        pending: list[tuple[str, str, float]] = getattr(self._local, "pending", [])
        self._local.pending = []
        for bucket, lane, waited in pending:
            self.metrics.observe(WAIT, waited, bucket=bucket, lane=lane)

    def _leave(self, product_code: str, api: str, ticket: Ticket, lane: Lane) -> None:
        # Interrupted while waiting: give up our place now rather than at expiry.
        if not ticket.seq:
            return
        keys = self.keys(product_code, api)
        member = f"{int(ticket.seq):015d}:{lane.value}:{ticket.waiter_id}"
        try:
            self._redis.zrem(keys.waiters, member)
            self._redis.zrem(keys.expiry, member)
        except redis.RedisError:
            log.debug("could not leave the queue of %s; the entry will expire", keys.bucket)

    def _call(self, script: Any, keys: BucketKeys, args: list[str | float | int]) -> Any:
        try:
            return script(keys=keys.all(), args=args)
        except redis.RedisError as exc:
            self.metrics.incr(UNAVAILABLE, bucket=keys.bucket)
            raise GateUnavailable(keys.bucket, _reason(exc)) from exc


def limiter_redis(settings: RedisSettings, *, timeout: float = 2.0) -> redis.Redis:
    """A Redis client suited to the limiter: short timeouts, one quick retry, so that an
    unreachable Redis fails closed within seconds instead of after long backoffs."""
    return connect(redis_target(settings), fail_fast=True, socket_timeout=timeout)
