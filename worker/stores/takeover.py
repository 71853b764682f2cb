"""Takeover in seconds: leases renewed by a heartbeat, and one index of work by due time.

Work held by a process that died must not wait for its lease to run out at length, nor for
the broker's visibility timeout. Two pieces make that so:

* ``DueIndex`` — a sorted set ``<ns>due`` of work by the time it must be looked at again: a
  held lease at its expiry (``lease:<kind>:<id>``, ``chunk:<batch>:<n>``), a delayed retry at
  its due time plus a grace, a batch's watchdog round (``wd:<batch>``). A live holder keeps
  pushing its entry forward; whatever comes due was left behind.
* ``Heartbeat`` — one daemon thread per worker process. Every ``every_s`` it renews every lease
  the process holds (independently of the work itself, so a long limiter wait or a slow answer
  never lets a live lease expire) and moves their entries to the new expiry; then it takes a
  few due entries (``ZRANGEBYSCORE -inf now``, small ``LIMIT``) and hands each to the handler
  registered for its kind, which re-drives the work (re-sends a chunk, makes a ledger entry due
  and sends it). Every worker process scans, so one dead node's work is picked up by another
  within a lease plus a beat.

A handler checks the truth (the lease itself, the chunk's bits, the ledger entry) before it
re-drives anything: the index is a hint, never the authority. Taking an entry moves it
``retry_s`` ahead, so a scanner that dies mid-way leaves it to come due again.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import redis

from worker.keys import RedisKeys
from worker.redisio import lua_script, text
from worker.stores.leases import Lease, LeaseManager

log = logging.getLogger("idv.takeover")

Handler = Callable[[str], None]
"""Re-drives one due entry; gets the member's rest after ``<kind>:``."""


class DueIndex:
    """Work by the time it must be looked at again (see the module docstring)."""

    def __init__(self, client: redis.Redis, keys: RedisKeys) -> None:
        self.redis = client
        self.key = f"{keys.namespace}due"
        self._take = client.register_script(lua_script("worker.stores", "due_take"))

    def schedule(self, member: str, at: float) -> None:
        """Look at ``member`` at ``at`` (epoch seconds), replacing any earlier time."""
        self.redis.zadd(self.key, {member: at})

    def drop(self, member: str) -> None:
        """Nothing left to look at for ``member``."""
        self.redis.zrem(self.key, member)

    def when(self, member: str) -> float | None:
        """When ``member`` is due, or None."""
        score = self.redis.zscore(self.key, member)
        return None if score is None else float(cast("float", score))

    def take_due(self, now: float, limit: int, retry_s: float) -> list[str]:
        """Up to ``limit`` members due at ``now``, each moved ``retry_s`` ahead."""
        raw = self._take(keys=[self.key], args=[f"{now:.6f}", limit, f"{now + retry_s:.6f}"])
        return [text(m) for m in cast("list[Any]", raw)]


@dataclass(eq=False)
class Held:
    """One lease the heartbeat renews: ``lost`` once a renewal found it taken or gone."""

    member: str
    renew: Callable[[], bool]
    ttl_s: float
    lost: bool = False
    id: int = field(default=0)


class Heartbeat:
    """Renews this process's leases and re-drives due work, on one daemon thread."""

    def __init__(
        self,
        index: DueIndex,
        *,
        every_s: float = 2.0,
        scan_limit: int = 20,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.index = index
        self.every_s = every_s
        self.scan_limit = scan_limit
        self.clock = clock
        self._held: dict[int, Held] = {}
        self._handlers: dict[str, Handler] = {}
        self._ticks: list[Callable[[], object]] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ registry

    def on(self, kind: str, handler: Handler) -> None:
        """Re-drive due entries ``<kind>:<rest>`` with ``handler(rest)``."""
        self._handlers[kind] = handler

    def every_beat(self, tick: Callable[[], object]) -> None:
        """Also run ``tick`` once a beat, after the scan (it must be quick: the leases wait)."""
        self._ticks.append(tick)

    def hold(self, member: str, renew: Callable[[], bool], ttl_s: float) -> Held:
        """Renew a lease every beat from now on; its index entry follows its expiry."""
        held = Held(member, renew, ttl_s, id=next(self._ids))
        self.index.schedule(member, self.clock() + ttl_s)
        with self._lock:
            self._held[held.id] = held
        return held

    def release(self, held: Held, *, keep_due: float | None = None) -> None:
        """Stop renewing ``held``; its entry is dropped, or kept due at ``keep_due``."""
        self.forget(held)
        if keep_due is None:
            self.index.drop(held.member)
        else:
            self.index.schedule(held.member, keep_due)

    def forget(self, held: Held) -> None:
        """Stop renewing ``held`` and leave its entry alone (another holder owns it now)."""
        with self._lock:
            self._held.pop(held.id, None)

    def holding(self) -> int:
        """How many leases this process holds now."""
        with self._lock:
            return len(self._held)

    # ------------------------------------------------------------------ the thread

    def start(self) -> Heartbeat:
        """Start the thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="idv-heartbeat", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (the leases it held run out on their own)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.beat()
            except redis.RedisError as exc:  # Redis away: the next beat tries again
                log.warning("heartbeat skipped: %s", type(exc).__name__)
            except Exception:
                log.exception("heartbeat failed")

    def beat(self) -> int:
        """One beat: renew what is held, re-drive what came due, run the ticks. Returns
        entries taken."""
        self.renew_all()
        taken = self.scan()
        for tick in self._ticks:
            try:
                tick()
            except Exception:
                log.warning("a heartbeat tick failed; it runs again next beat", exc_info=True)
        return taken

    def renew_all(self) -> None:
        """Renew every held lease; one that was lost is marked and no longer renewed."""
        with self._lock:
            held = list(self._held.values())
        for h in held:
            if h.renew():
                self.index.schedule(h.member, self.clock() + h.ttl_s)
            else:
                h.lost = True
                with self._lock:
                    self._held.pop(h.id, None)

    def scan(self) -> int:
        """Hand due entries to their handlers; one that fails comes due again later."""
        now = self.clock()
        retry_s = max(3 * self.every_s, 5.0)
        taken = self.index.take_due(now, self.scan_limit, retry_s)
        for member in taken:
            kind, _, rest = member.partition(":")
            handler = self._handlers.get(kind)
            if handler is None:
                continue  # another process kind's entry (or an older one): it stays
            try:
                handler(rest)
            except Exception:
                log.warning("re-driving %s failed; it comes due again", kind, exc_info=True)
        return len(taken)


# ---------------------------------------------------------------- leases on the heartbeat


def lease_member(kind: str, id: str) -> str:
    """The index entry of lease ``kind``/``id``."""
    return f"lease:{kind}:{id}"


class HeartbeatLease:
    """A ``Lease`` the heartbeat renews; released (and unindexed) with it."""

    def __init__(self, lease: Lease, heartbeat: Heartbeat) -> None:
        self.lease = lease
        self._heartbeat = heartbeat
        self._held = heartbeat.hold(lease_member(lease.kind, lease.id), lease.renew, lease.ttl_s)

    def renew(self, ttl_s: float | None = None) -> bool:
        """Whether it is still ours (renewed now, as the work asks)."""
        return not self._held.lost and self.lease.renew(ttl_s)

    def release(self) -> bool:
        self._heartbeat.release(self._held)
        return self.lease.release()


class HeartbeatLeases:
    """``LeaseManager.acquire`` whose leases the heartbeat renews and indexes by expiry."""

    def __init__(self, manager: LeaseManager, heartbeat: Heartbeat) -> None:
        self.manager = manager
        self.heartbeat = heartbeat

    def acquire(self, kind: str, id: str, ttl_s: float) -> HeartbeatLease | None:
        lease = self.manager.acquire(kind, id, ttl_s)
        return None if lease is None else HeartbeatLease(lease, self.heartbeat)
