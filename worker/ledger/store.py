"""The transaction ledger in Redis: one hash per transaction, indexes by due time.

Keys (all hash-tagged ``{ledger}``, so each script's keys live on one Redis Cluster slot)::

    <ns>{ledger}:tx:<tid>     hash: state, ids, times, attempts, reason, t:<state> per transition
    <ns>{ledger}:due:rt       zset: open transactions waiting for realtime work, by due time
    <ns>{ledger}:due:ar       zset: open transactions waiting for archival, by due time
    <ns>{ledger}:deletes      zset: open transactions by the provider's deletion time
    <ns>{ledger}:counts       hash: transactions per state
    <ns>{ledger}:guessed      zset: entries only a callback vouches for (a static token on a
                              transaction never started through us), by expiry; bounded
    <ns>{ledger}:lock:<name>  the current sweep's fencing token (``<ns>{ledger}:fence:<name>``)
    <ns>{ledger}:swept:<name> when a sweep last took its lock (epoch seconds; beat liveness for
                              ``idv-worker doctor``), kept a day

A sweep reads ``ZRANGEBYSCORE due -inf now``: it costs O(due), not O(all). Open entries live
until the provider's deletion plus a grace period; a final one (archived, abandoned, expired)
``IDV_LEDGER_GRACE_S`` after it ended. Every change is one Lua script (``lua/``), so a counter
never drifts from the states and a transaction is claimed by one attempt at a time. This
module holds those changes; the reads (and the key names) are ``worker.ledger.reads``.

A move to ``expired`` (the provider deleted a result before it was archived: lost), whoever
makes it (the reconciler's deletion sweep, an onboarding or archival run that finds the
transaction gone), is reported here, once: ``idv_archival_expired_total``, one error line and
a Sentry event.

With ``IDV_REDIS_WAIT_REPLICAS`` every script's writes count only once that many replicas hold
them (``worker.stores.replication``): one they did not confirm in time raises ``NotReplicated``
(retryable, and a ``RedisError``), so a Sentinel failover cannot lose a transition a caller was
told happened. Each script is safe to repeat after such an applied-but-unconfirmed write: the
upsert finds the entry and changes nothing (``record_start`` answers False); the callback
answers ``duplicate`` and the work it scheduled comes due for the reconciler; a claim answers
``not_due`` and the attempt comes due again at its hold time; a transition into the state the
entry is in sets the same fields, one into a final state finds it final; ``extend`` never
moves a due time back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import redis

from worker.keys import RedisKeys, parse_transaction_id
from worker.ledger.model import CallbackVerdict, Claim, Queue, State
from worker.ledger.reads import LedgerReads, float_or_none
from worker.observability import Metrics, NullMetrics, get_logger
from worker.redisio import lua_script, optional_text, text
from worker.settings import LedgerSettings
from worker.stores.replication import OFF, ReplicatedScript, ReplicaWait

log = get_logger("ledger")
Reporter = Callable[..., None]

_SCRIPTS = ("upsert", "callback", "claim", "transition", "extend", "seen")
SWEPT_TTL_S = 86400


class Ledger(LedgerReads):
    """Changes ledger entries (see the module docstring); the reads are ``LedgerReads``'."""

    def __init__(
        self,
        client: redis.Redis,
        keys: RedisKeys,
        settings: LedgerSettings,
        *,
        evidence_window_s: float,
        require_known: bool = False,
        replicas: ReplicaWait = OFF,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
        report: Reporter | None = None,
    ) -> None:
        """``evidence_window_s``: how long after completion a flow's work is realtime
        (``IDV_EVIDENCE_WINDOW_S``); ``require_known``: ``IDV_CALLBACK_REQUIRE_KNOWN``;
        ``metrics`` and ``report`` (a Sentry reporter) hear of every move to ``expired``;
        ``replicas``: ``IDV_REDIS_WAIT_REPLICAS`` (each script's writes are acknowledged once
        that many replicas hold them, else ``NotReplicated``)."""
        super().__init__(client, keys)
        self.settings = settings
        self.evidence_window_s = evidence_window_s
        self.require_known = require_known
        self.clock = clock
        self.metrics: Metrics = metrics if metrics is not None else NullMetrics()
        self._report = report
        self._scripts = {
            name: ReplicatedScript(client, lua_script("worker.ledger", name), replicas, name=name)
            for name in _SCRIPTS
        }
        self._release = client.register_script(lua_script("worker.stores", "lease_release"))

    # ------------------------------------------------------------------ scripts

    def _keys(self, tid: str, lock: str = "reconcile") -> list[str]:
        return [
            self.key(tid),
            self.index_key("rt"),
            self.index_key("ar"),
            self.deletes_key,
            self.counts_key,
            self.lock_key(lock),
            self.guessed_key,
        ]

    def _run(self, name: str, tid: str, args: Iterable[object], lock: str = "reconcile") -> Any:
        return self._scripts[name](keys=self._keys(tid, lock), args=[str(a) for a in args])

    # ------------------------------------------------------------------ entries in

    def _open_ttl_ms(self, deletes_at: float, now: float) -> int:
        return int((max(deletes_at - now, 0) + self.settings.ledger_grace_s) * 1000)

    def record_start(
        self,
        tid: str,
        product_code: str,
        merchant_biz_id: str,
        *,
        source: str = "started",
        created_at: float | None = None,
    ) -> bool:
        """A flow started (``Initialize`` answered): polled after ``IDV_RECONCILE_AFTER_S``.

        Returns False when the transaction was already known (nothing regressed).
        """
        tid = parse_transaction_id(tid, "transaction_id")
        now = self.clock()
        created = now if created_at is None else created_at
        deletes = created + self.settings.provider_retention_s
        due = max(created + self.settings.reconcile_after_s, now)
        reply = self._run(
            "upsert",
            tid,
            [tid, now, State.INITIALIZED.value, product_code, merchant_biz_id, source, created,
             "", deletes, "rt", due, self._open_ttl_ms(deletes, now)],
        )  # fmt: skip
        return int(reply[0]) == 1

    def record_completed(
        self,
        tid: str,
        product_code: str,
        merchant_biz_id: str,
        completed_at: float,
        *,
        source: str = "import",
    ) -> bool:
        """A transaction known to be complete (an import): realtime work while its evidence
        window is open, else straight to archival."""
        tid = parse_transaction_id(tid, "transaction_id")
        now = self.clock()
        deletes = completed_at + self.settings.provider_retention_s
        queue: Queue = "rt" if now < completed_at + self.evidence_window_s else "ar"
        reply = self._run(
            "upsert",
            tid,
            [tid, now, State.COMPLETED.value, product_code, merchant_biz_id, source,
             completed_at, completed_at, deletes, queue, now, self._open_ttl_ms(deletes, now)],
        )  # fmt: skip
        return int(reply[0]) == 1

    def on_callback(
        self,
        tid: str,
        product_code: str,
        merchant_biz_id: str,
        *,
        now: float | None = None,
        stored_biz_id: str | None = None,
        max_unknown: int = 10_000,
    ) -> CallbackVerdict:
        """Record a callback; the ledger's ids win over the callback's (they came from us).

        ``stored_biz_id``: the callback's token was derived from this MerchantBizId, so only
        an entry storing it is taken (``unknown`` otherwise, nothing written). Without it, a
        transaction the ledger does not know gets an entry unless ``require_known`` or
        ``max_unknown`` such entries are open (``full``). The callback never sets
        ``completed_at``: ``saw_completed`` does.
        """
        now = self.clock() if now is None else now
        deletes = now + self.settings.provider_retention_s
        reply = self._run(
            "callback",
            tid,
            [tid, now, product_code, merchant_biz_id, now + self.settings.reconcile_after_s,
             deletes, int(self.require_known),
             self._open_ttl_ms(deletes, now), stored_biz_id or "", max_unknown],
        )  # fmt: skip
        status = text(reply[0])
        if status == "unknown":
            return CallbackVerdict("unknown")
        if status == "full":
            return CallbackVerdict("full")
        return CallbackVerdict(
            "accepted" if status == "accepted" else "duplicate",
            product_code=text(reply[1]),
            merchant_biz_id=text(reply[2]),
            completed_at=float_or_none(optional_text(reply[3])),
        )

    # ------------------------------------------------------------------ sweeps

    def take_lock(self, name: str, ttl_s: float) -> str | None:
        """Take the sweep lock ``name``; returns its fencing token, or None if another holds it.

        Tokens only grow, so a sweep that stalled past its lock cannot claim once a newer one
        took over (``claim`` checks the token).
        """
        token = str(self.redis.incr(f"{self._prefix}:fence:{name}"))
        took = self.redis.set(self.lock_key(name), token, nx=True, px=int(ttl_s * 1000))
        if not took:
            return None
        self.redis.set(self.swept_key(name), repr(self.clock()), ex=SWEPT_TTL_S)
        return token

    def release_lock(self, name: str, token: str) -> None:
        """Give the lock up if ``token`` still holds it."""
        self._release(keys=[self.lock_key(name)], args=[token])

    def claim(
        self,
        tid: str,
        queue: Queue,
        *,
        hold_until: float,
        fence: str | None = None,
        lock: str = "reconcile",
        now: float | None = None,
    ) -> Claim | str:
        """Take one attempt at a due transaction; returns the ``Claim`` or why not."""
        now = self.clock() if now is None else now
        reply = self._run("claim", tid, [tid, now, hold_until, fence or "", queue], lock=lock)
        verdict = text(reply[0])
        if verdict != "claimed":
            return verdict
        return Claim(
            transaction_id=tid,
            state=State(text(reply[1])),
            product_code=text(reply[2]),
            merchant_biz_id=text(reply[3]),
            created_at=float(text(reply[4])),
            completed_at=float_or_none(optional_text(reply[5])),
            deletes_at=float(text(reply[6])),
            attempts=int(reply[7]),
        )

    # ------------------------------------------------------------------ transitions

    def transition(
        self,
        tid: str,
        to: State,
        *,
        queue: Queue | None = None,
        due: float | None = None,
        reason: str | None = None,
        allowed_from: Iterable[State] = (),
        fields: Mapping[str, object] | None = None,
    ) -> bool:
        """Move ``tid`` to ``to`` (and to ``queue`` at ``due``); False when not allowed."""
        now = self.clock()
        pairs: list[object] = []
        for name, value in (fields or {}).items():
            pairs += [name, value]
        reply = self._run(
            "transition",
            tid,
            [tid, now, to.value, queue or "", due if due is not None else now,
             (reason or "")[:300], self.settings.ledger_grace_s * 1000,
             ",".join(s.value for s in allowed_from), *pairs],
        )  # fmt: skip
        applied = int(reply[0]) == 1
        if applied and to is State.EXPIRED:
            self._expired(tid)
        return applied

    def _expired(self, tid: str) -> None:
        # A final state is entered once, so this runs once per transaction.
        self.metrics.incr("idv_archival_expired")
        log.error("transaction %s expired before it was archived: its result is lost", tid)
        if self._report is not None:
            self._report("transaction expired before archival", flow="archival")

    def extend(self, tid: str, until: float) -> bool:
        """Keep the current attempt alive until ``until`` (its due time moves)."""
        return int(self._run("extend", tid, [tid, until])) == 1

    def saw_completed(self, tid: str, at: float) -> float | None:
        """The worker saw ``tid``'s completed result at ``at``: the first such time is the
        transaction's ``completed_at`` (returned; None when the ledger does not know ``tid``).
        CheckResult has no time field, so this is as close as the provider lets us get."""
        return float_or_none(optional_text(self._run("seen", tid, [tid, at])))

    def finish(self, tid: str, *, evidence: str, reason: str | None = None) -> bool:
        """The full result and what could be had of the evidence are stored: archived.

        ``evidence`` is ``stored`` (or ``absent``: the product has no video) or ``lost``.
        """
        now = self.clock()
        fields: dict[str, object] = {f"t:{State.RESULT_STORED.value}": now}
        lost = evidence == "lost"
        fields[f"t:{(State.EVIDENCE_LOST if lost else State.EVIDENCE_STORED).value}"] = now
        entry_done = self.redis.hget(self.key(tid), "done_at")
        if entry_done is None:
            fields["done_at"] = now
            fields[f"t:{State.COMPLETED.value}"] = now
        return self.transition(tid, State.ARCHIVED, reason=reason, fields=fields)

    def due_again(self, tid: str, at: float) -> bool:
        """The current attempt retries at ``at``: re-driven then if its message is lost."""
        raw = self.redis.hmget(self.key(tid), ["s", "q"])
        state, queue = (optional_text(v) for v in cast("list[Any]", raw))
        if state is None or queue not in ("rt", "ar"):
            return False
        current = State(state)
        return self.transition(
            tid, current, queue=cast("Queue", queue), due=at, allowed_from=(current,)
        )

    def redrive_now(self, tid: str) -> None:
        """Make a completed transaction's work due now (its message could not be sent)."""
        self.transition(
            tid, State.COMPLETED, queue="rt", due=self.clock(), allowed_from=(State.COMPLETED,)
        )

    def poll_later(self, tid: str) -> None:
        """A poll found the flow unfinished: poll again ``IDV_RECONCILE_AFTER_S`` from now."""
        self.transition(
            tid,
            State.INITIALIZED,
            queue="rt",
            due=self.clock() + self.settings.reconcile_after_s,
            allowed_from=(State.INITIALIZED,),
        )

    def gone(self, tid: str, *, archival: bool, reason: str) -> State | None:
        """The provider does not have ``tid``: deleted before archival (``expired``, lost) or
        never known to it (``abandoned``). Returns the state it moved to (None: it did not)."""
        to = State.EXPIRED if archival else State.ABANDONED
        return to if self.transition(tid, to, reason=reason) else None

    def delete(self, tid: str) -> bool:
        """Forget ``tid`` entirely (erasure); counts and indexes follow."""
        entry = self.get(tid)
        if entry is None:
            return False
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.key(tid))
            pipe.zrem(self.guessed_key, tid)
            for key in (self.index_key("rt"), self.index_key("ar"), self.deletes_key):
                pipe.zrem(key, tid)
            pipe.hincrby(self.counts_key, entry.state.value, -1)
            pipe.execute()
        return True
