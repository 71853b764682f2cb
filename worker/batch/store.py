"""Batch state in Redis: manifest chunks, one status byte per row, counters, leases, claims.

Its keys are laid out in ``worker.batch.layout``: they share the batch's hash tag, so the
Lua scripts of ``lua/`` can touch any of them at once. Item statuses are one byte per row in
the string ``st`` (NUL = pending) with their totals in the hash ``n``; ``lua/prelude.lua`` keeps
the two in step, so a counter can never drift from the statuses however often a step is
repeated after a crash.

What one queued row costs in Redis is its share of a compressed chunk (a few dozen bytes) and
of one Celery message per chunk; per-item keys appear only once an item is processed. Every
key of a batch expires ``batch_ttl_s`` after the batch was last active.

This module holds the writes; ``worker.batch.reads`` the reads (``BatchStore`` has both).
Chunk leases live here rather than in ``worker.stores.leases`` because the watchdog must see a
chunk's lease, its completion bit and its queued bit in one atomic script.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis

from worker.batch.counters import RATE_WINDOW_S
from worker.batch.layout import BatchKeys
from worker.batch.model import BatchState, ItemStatus, StoredRow
from worker.batch.reads import BatchNotFound, BatchReads
from worker.keys import RedisKeys
from worker.redisio import lua_script, optional_text, text
from worker.settings import BatchSettings
from worker.stores.replication import OFF, ReplicatedScript, ReplicaWait

__all__ = ["KEEP_CLAIM", "RATE_WINDOW_S", "BatchKeys", "BatchNotFound", "BatchStore", "Begin"]

KEEP_CLAIM = "-"  # ``finish(token=KEEP_CLAIM)`` leaves an item's claim in place
_MAX_ORPHANS = 1000  # offers kept (each is re-made while its chunk stays orphaned)
_ORPHANS_TTL_S = 60

log = logging.getLogger("idv.batch")


@dataclass(frozen=True, slots=True)
class Begin:
    """What ``begin`` decided for a row: ``verdict`` go/skip/stop/dup/claimed and a detail."""

    verdict: str
    extra: str


class BatchStore(BatchReads):
    """All Redis access of the batch flow (one instance per process, no global state): the
    writes here, the reads inherited from ``BatchReads``."""

    def __init__(
        self,
        client: redis.Redis,
        keys: RedisKeys,
        settings: BatchSettings,
        *,
        replicas: ReplicaWait = OFF,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``replicas``: ``IDV_REDIS_WAIT_REPLICAS``; a billed call's claim is acknowledged
        once that many replicas hold it (see ``claim``)."""
        super().__init__(client, keys, clock=clock)
        self.settings = settings
        self.ttl_s = settings.batch_ttl_s
        self._submit_chunk = client.register_script(lua_script("worker.batch", "submit_chunk"))
        self._begin = client.register_script(lua_script("worker.batch", "begin"))
        self._claim = ReplicatedScript(
            client, lua_script("worker.batch", "claim"), replicas, name="batch claim"
        )
        self._finish = client.register_script(lua_script("worker.batch", "finish"))
        self._chunk_acquire = client.register_script(lua_script("worker.batch", "chunk_acquire"))
        self._chunk_release = client.register_script(lua_script("worker.batch", "chunk_release"))
        self._requeue = client.register_script(lua_script("worker.batch", "requeue"))
        self._chunk_redrive = client.register_script(lua_script("worker.batch", "chunk_redrive"))
        self._transition = client.register_script(lua_script("worker.batch", "transition"))
        self._reset = client.register_script(lua_script("worker.batch", "reset"))

    # ------------------------------------------------------------------ meta

    def create(self, batch_id: str, fields: Mapping[str, str | int | float]) -> bool:
        """Create the batch's meta (state ``running``) unless it exists; True if created."""
        k = self.keys(batch_id)
        now = self.clock()
        values = {
            **{name: str(v) for name, v in fields.items()},
            "batch_id": batch_id,
            "state": BatchState.RUNNING.value,
            "created_at": f"{now:.6f}",
            "updated_at": f"{now:.6f}",
            "submitted": "0",
            "submitted_chunks": "0",
            "submitted_rows": "0",
        }
        if not self.redis.hsetnx(k.meta, "batch_id", batch_id):
            return False
        self.redis.hset(k.meta, mapping=values)
        self.redis.zadd(self.index_key, {batch_id: now})
        self.touch(batch_id)
        return True

    def set_meta(self, batch_id: str, **fields: str | int | float) -> None:
        """Set meta fields."""
        self.redis.hset(self.keys(batch_id).meta, mapping={k: str(v) for k, v in fields.items()})

    def touch(self, batch_id: str) -> None:
        """Push the expiry of every key of the batch ``batch_ttl_s`` into the future."""
        pipe = self.redis.pipeline(transaction=False)
        for key in self.keys(batch_id).all():
            pipe.expire(key, self.ttl_s)
        # The index lives as long as its most recently active batch.
        pipe.expire(self.index_key, self.ttl_s)
        pipe.execute()

    # ------------------------------------------------------------------ submission

    def write_chunk(
        self,
        batch_id: str,
        chunk_no: int,
        blob: bytes,
        rows: int,
        invalid: Sequence[tuple[int, str]] = (),
    ) -> bool:
        """Store one chunk, mark its invalid rows and count it (idempotent per chunk)."""
        k = self.keys(batch_id)
        args: list[Any] = [chunk_no, blob, rows, chunk_no + 1, f"{self.clock():.6f}", self.ttl_s]
        for seq, detail in invalid:
            args += [seq, detail]
        keys = [k.meta, k.chunks, k.st, k.n, k.detail, k.cq]
        return int(self._submit_chunk(keys=keys, args=args)) == 1

    def replace_chunk(self, batch_id: str, chunk_no: int, blob: bytes) -> None:
        """Overwrite a stored chunk (erasure rewrites rows without their personal fields)."""
        self.redis.hset(self.keys(batch_id).chunks, mapping={str(chunk_no): blob})

    def forget_item(self, batch_id: str, seq: int, item_id: str) -> None:
        """Drop what the batch keeps about one item besides its status byte and counters."""
        k = self.keys(batch_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hdel(k.owner, item_id)
        pipe.hdel(k.inflight, item_id)
        pipe.execute()

    def delete(self, batch_id: str) -> int:
        """Delete every key of the batch (markers included) and its index entry."""
        k = self.keys(batch_id)
        keys = [*k.all(), *(k.marker(m) for m in ("wd", "wdrun", "sub", "fin"))]
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(*keys)
        pipe.zrem(self.index_key, batch_id)
        deleted, _ = pipe.execute()
        return int(deleted)

    def acquire_submitter(self, batch_id: str, token: str, ttl_s: float) -> bool:
        """The submission lease (one submitter per batch); re-entrant for the same token."""
        key = self.keys(batch_id).marker("sub")
        if self.redis.set(key, token, nx=True, px=int(ttl_s * 1000)):
            return True
        if optional_text(cast("bytes | None", self.redis.get(key))) == token:
            self.redis.pexpire(key, int(ttl_s * 1000))
            return True
        return False

    def release_submitter(self, batch_id: str, token: str) -> None:
        """Drop the submission lease if we hold it."""
        key = self.keys(batch_id).marker("sub")
        if optional_text(cast("bytes | None", self.redis.get(key))) == token:
            self.redis.delete(key)

    # ------------------------------------------------------------------ items

    def begin(self, batch_id: str, row: StoredRow, item_id: str) -> Begin:
        """Decide whether a row may go ahead (state, status, duplicates, earlier claims)."""
        k = self.keys(batch_id)
        owner = f"{row.seq}:{row.row}"
        dup = json.dumps(
            {"row": row.row, "line": row.line, "item_id": item_id, "code": "Duplicate"}
        )
        reply = self._begin(
            keys=[k.meta, k.st, k.owner, k.inflight, k.n, k.detail],
            args=[row.seq, item_id, owner, dup, self.ttl_s],
        )
        verdict, extra = (optional_text(v) or "" for v in reply)
        if verdict == "dup":
            # Say which row holds the item, now that we know it.
            first = int(extra.split(":", 1)[1]) if ":" in extra else None
            detail = {
                "row": row.row,
                "line": row.line,
                "item_id": item_id,
                "code": "Duplicate",
                "reason": f"same item as row {first}" if first else "same item as an earlier row",
            }
            self.redis.hset(k.detail, str(row.seq), json.dumps(detail))
        return Begin(verdict, extra)

    def claim(self, batch_id: str, seq: int, item_id: str, token: str) -> str:
        """Record that a call for the item is about to leave; ``"ok"`` or why it must not.

        With ``IDV_REDIS_WAIT_REPLICAS`` the claim counts only once replicas hold it: a claim
        a failover lost would let the item be sent (and billed) again. ``NotReplicated``
        means the call was not sent; repeating the claim with the same token answers ``ok``.
        The writes before it (``begin``) are covered too (replication keeps their order);
        those after it (``finish``) need not be: one a failover lost leaves the claim, and an
        item with a claim is never sent again automatically.
        """
        k = self.keys(batch_id)
        reply = self._claim(
            keys=[k.meta, k.st, k.inflight],
            args=[seq, item_id, token, f"{self.clock():.6f}", self.ttl_s],
        )
        return optional_text(reply) or ""

    def finish(
        self,
        batch_id: str,
        seq: int,
        item_id: str,
        status: ItemStatus,
        *,
        token: str = "",
        detail: Mapping[str, Any] | None = None,
        sub_code: str | None = None,
        called: bool = False,
    ) -> bool:
        """Set a row's status, keep counters in step, drop the claim; True if it changed.

        ``token`` "" drops any claim on the item, "-" keeps it (uncertain: the claim is the
        evidence), else only our own claim is dropped.
        """
        k = self.keys(batch_id)
        code = "" if status is ItemStatus.PENDING else status.code.decode()
        args: list[Any] = [
            seq,
            item_id,
            token,
            code,
            f"{self.clock():.6f}",
            json.dumps(dict(detail), ensure_ascii=False) if detail else "",
            sub_code or "",
            1 if called else 0,
            RATE_WINDOW_S,
            self.ttl_s,
        ]
        return int(self._finish(keys=[k.st, k.n, k.inflight, k.detail], args=args)) == 1

    # ------------------------------------------------------------------ chunks

    def acquire_chunk(self, batch_id: str, chunk_no: int, token: str, ttl_s: float) -> int:
        """1 lease taken/renewed, 0 another worker holds it, -1 chunk already complete."""
        k = self.keys(batch_id)
        return int(
            self._chunk_acquire(
                keys=[k.cl, k.cq, k.cdone],
                args=[chunk_no, token, f"{self.clock():.6f}", ttl_s, self.ttl_s],
            )
        )

    def release_chunk(
        self, batch_id: str, chunk_no: int, token: str, mode: str
    ) -> tuple[int, int, str]:
        """Give the lease up; ``mode`` done / requeue / stop. Returns (done, total, state)."""
        if mode not in ("done", "requeue", "stop"):
            raise ValueError(f"bad mode {mode!r}")
        k = self.keys(batch_id)
        done, total, state = self._chunk_release(
            keys=[k.cl, k.cq, k.cdone, k.meta], args=[chunk_no, token, mode, self.ttl_s]
        )
        return int(done), int(total), optional_text(state) or ""

    def requeue_candidates(self, batch_id: str, *, force: bool = False) -> list[int]:
        """Chunks left behind (incomplete, not queued, not leased), now marked queued."""
        k = self.keys(batch_id)
        reply = self._requeue(
            keys=[k.meta, k.cdone, k.cq, k.cl], args=[f"{self.clock():.6f}", 1 if force else 0]
        )
        return [int(c) for c in reply]

    def redrive_chunk(self, batch_id: str, chunk_no: int) -> int:
        """2 its holder's lease ran out unreleased (adopt it now), 1 no lease holds it (send it
        again), both marked queued; 0 a live lease holds it; -1 nothing to do."""
        k = self.keys(batch_id)
        return int(
            self._chunk_redrive(
                keys=[k.cl, k.cq, k.cdone, k.meta], args=[chunk_no, f"{self.clock():.6f}"]
            )
        )

    @property
    def orphans_key(self) -> str:
        """Chunks whose holder died, offered to any worker running a chunk (a list)."""
        return f"{self.namespace}batch-orphans"

    def offer_orphan(self, batch_id: str, chunk_no: int) -> None:
        """Offer a chunk whose holder died to the next worker that can adopt it. A hint: the
        takeover index re-drives the chunk again if nobody takes it (stale offers are cheap,
        the adopter's lease decides)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.rpush(self.orphans_key, f"{batch_id}:{chunk_no}")
        pipe.ltrim(self.orphans_key, -_MAX_ORPHANS, -1)
        pipe.expire(self.orphans_key, _ORPHANS_TTL_S)
        pipe.execute()

    def take_orphan(self) -> tuple[str, int] | None:
        """The oldest offered chunk, or None."""
        while (raw := self.redis.lpop(self.orphans_key)) is not None:
            batch_id, _, number = text(raw).rpartition(":")
            if batch_id and number.isdigit():
                return batch_id, int(number)
            log.warning("dropped a malformed orphan offer %r", raw)
        return None

    def unmark_queued(self, batch_id: str, chunks: Iterable[int]) -> None:
        """Clear the queued bit of chunks whose message could not be sent."""
        pipe = self.redis.pipeline(transaction=False)
        for chunk in chunks:
            pipe.setbit(self.keys(batch_id).cq, chunk, 0)
        pipe.execute()

    # ------------------------------------------------------------------ state

    def transition(
        self, batch_id: str, op: str, *, reason: str = "", by: str = "", at: float | None = None
    ) -> tuple[bool, str]:
        """Apply a state change (pause/resume/cancel/complete/reopen) at ``at`` (default: now):
        (applied, state)."""
        when = self.clock() if at is None else at
        ok, state = self._transition(
            keys=[self.keys(batch_id).meta],
            args=[op, f"{when:.6f}", reason[:500], by[:64]],
        )
        return int(ok) == 1, optional_text(state) or ""

    def reset(self, batch_id: str, statuses: Sequence[ItemStatus]) -> tuple[int, list[int]]:
        """Put rows of the given statuses back to pending: (rows, chunks to enqueue)."""
        wanted = "".join(s.code.decode() for s in statuses)
        if not wanted or "\0" in wanted:
            raise ValueError("only terminal statuses can be reset")
        k = self.keys(batch_id)
        reply = self._reset(
            keys=[k.st, k.n, k.detail, k.inflight, k.cdone, k.cq, k.meta],
            args=[wanted, self.chunk_size(batch_id)],
        )
        return int(reply[0]), [int(c) for c in reply[1:]]

    def arm_marker(self, batch_id: str, name: str, ttl_s: float) -> bool:
        """Set a short-lived marker (``wd``, ``fin``) unless present; True if we set it."""
        key = self.keys(batch_id).marker(name)
        return bool(self.redis.set(key, "1", nx=True, px=max(1, int(ttl_s * 1000))))

    def drop_marker(self, batch_id: str, name: str) -> None:
        """Delete a marker."""
        self.redis.delete(self.keys(batch_id).marker(name))
