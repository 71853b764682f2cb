"""Reading a batch's state in Redis: meta, chunks, statuses, reasons, claims, progress.

The keys are laid out in ``worker.batch.layout``, the writes are ``worker.batch.store``'s
``BatchStore`` (which adds them to these reads). Nothing here runs a script; ``list_ids`` only
prunes the index of batches that expired.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any, cast

import redis

from worker.batch.counters import decode_progress
from worker.batch.layout import BatchKeys
from worker.batch.model import BatchState, ItemStatus, Progress, StoredRow, decode_chunk
from worker.errors import IdvError
from worker.keys import RedisKeys, validate_id
from worker.redisio import optional_text


class BatchNotFound(IdvError):
    """No batch with this id (never submitted, or expired)."""

    def __init__(self, batch_id: str) -> None:
        self.batch_id = batch_id
        super().__init__(f"no batch {batch_id}")


class BatchReads:
    """Every read of the batch flow's Redis state (``BatchStore`` adds the writes)."""

    def __init__(
        self, client: redis.Redis, keys: RedisKeys, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.redis = client
        self.clock = clock  # epoch seconds: when calls happen, and when progress is read
        self.namespace = keys.namespace

    # ------------------------------------------------------------------ keys and meta

    def keys(self, batch_id: str) -> BatchKeys:
        """Keys of ``batch_id`` (validated: it becomes part of key names)."""
        return BatchKeys.under(f"{self.namespace}{{batch:{validate_id(batch_id, 'batch_id')}}}:")

    @property
    def index_key(self) -> str:
        """Sorted set of every batch by creation time."""
        return f"{self.namespace}batches"

    def meta(self, batch_id: str) -> dict[str, str]:
        """The meta hash as text; ``BatchNotFound`` if the batch does not exist."""
        raw = cast("dict[bytes, bytes]", self.redis.hgetall(self.keys(batch_id).meta))
        if not raw:
            raise BatchNotFound(batch_id)
        return {k.decode(): v.decode("utf-8") for k, v in raw.items()}

    def exists(self, batch_id: str) -> bool:
        """Whether the batch exists."""
        return bool(self.redis.exists(self.keys(batch_id).meta))

    def list_ids(self, limit: int = 100) -> list[str]:
        """Batch ids, newest first; ids whose batch expired are dropped from the index."""
        raw = cast("list[bytes]", self.redis.zrevrange(self.index_key, 0, limit - 1))
        ids = [r.decode() for r in raw]
        alive = [i for i in ids if self.exists(i)]
        gone = set(ids) - set(alive)
        if gone:
            self.redis.zrem(self.index_key, *gone)
        return alive

    def chunk_size(self, batch_id: str) -> int:
        """Rows per chunk of this batch."""
        return int(self.meta(batch_id)["chunk_size"])

    def read_chunk(self, batch_id: str, chunk_no: int, chunk_size: int) -> list[StoredRow]:
        """The rows of one chunk (empty if it does not exist)."""
        blob = cast("bytes | None", self.redis.hget(self.keys(batch_id).chunks, str(chunk_no)))
        if blob is None:
            return []
        return decode_chunk(blob, chunk_no * chunk_size)

    def statuses(self, batch_id: str, first_seq: int, count: int) -> list[ItemStatus]:
        """Statuses of ``count`` rows from ``first_seq``."""
        raw = cast(
            "bytes",
            self.redis.getrange(self.keys(batch_id).st, first_seq, first_seq + count - 1),
        )
        out = [ItemStatus.from_code(raw[i : i + 1]) for i in range(len(raw))]
        return out + [ItemStatus.PENDING] * (count - len(out))

    def details(self, batch_id: str, seqs: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Stored reasons of the given rows (those that have one)."""
        wanted = list(seqs)
        if not wanted:
            return {}
        raw = cast("list[bytes | None]", self.redis.hmget(self.keys(batch_id).detail, wanted))
        return {seq: json.loads(v) for seq, v in zip(wanted, raw, strict=True) if v is not None}

    def claims(self, batch_id: str) -> dict[str, str]:
        """Open claims: item id -> "token|time|seq" (calls under way or of unknown outcome)."""
        raw = cast("dict[bytes, bytes]", self.redis.hgetall(self.keys(batch_id).inflight))
        return {k.decode(): v.decode() for k, v in raw.items()}

    def state(self, batch_id: str) -> BatchState:
        """The batch's state."""
        raw = optional_text(
            cast("bytes | None", self.redis.hget(self.keys(batch_id).meta, "state"))
        )
        if raw is None:
            raise BatchNotFound(batch_id)
        return BatchState(raw)

    # ------------------------------------------------------------------ progress

    def progress(self, batch_id: str, quota: float = 0.0) -> Progress:
        """Counters, state and rates of a batch in one round trip."""
        k = self.keys(batch_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(k.meta)
        pipe.hgetall(k.n)
        pipe.bitcount(k.cdone)
        meta_raw, n_raw, chunks_done = pipe.execute()
        if not meta_raw:
            raise BatchNotFound(batch_id)
        return decode_progress(batch_id, meta_raw, n_raw, int(chunks_done), quota, now=self.clock())
