"""Reading the transaction ledger: its keys, entries, counts and indexes (no writes).

The key layout and what every change guarantees are described in ``worker.ledger.store``;
``Ledger`` there adds the writes (one Lua script each) to these reads.
"""

from __future__ import annotations

from typing import Any, cast

import redis

from worker.keys import RedisKeys
from worker.ledger.model import FINAL_STATES, LedgerEntry, Queue, State
from worker.redisio import optional_text, text, text_map


def float_or_none(value: str | None) -> float | None:
    """``value`` as a float; None for a missing or empty field."""
    return float(value) if value not in (None, "") else None


class LedgerReads:
    """The ledger's keys and every read of it (``Ledger`` adds the writes)."""

    def __init__(self, client: redis.Redis, keys: RedisKeys) -> None:
        self.redis = client
        self._prefix = f"{keys.namespace}{{ledger}}"

    # ------------------------------------------------------------------ keys

    def key(self, tid: str) -> str:
        return f"{self._prefix}:tx:{tid}"

    def index_key(self, queue: Queue) -> str:
        return f"{self._prefix}:due:{queue}"

    @property
    def deletes_key(self) -> str:
        return f"{self._prefix}:deletes"

    @property
    def counts_key(self) -> str:
        return f"{self._prefix}:counts"

    def lock_key(self, name: str) -> str:
        return f"{self._prefix}:lock:{name}"

    @property
    def guessed_key(self) -> str:
        return f"{self._prefix}:guessed"

    def swept_key(self, name: str) -> str:
        return f"{self._prefix}:swept:{name}"

    def last_sweep(self, name: str) -> float | None:
        """When the sweep ``name`` last took its lock (epoch seconds), or None."""
        raw = self.redis.get(self.swept_key(name))
        return None if raw is None else float(text(raw))

    # ------------------------------------------------------------------ reads

    def merchant_biz_id_of(self, tid: str) -> str | None:
        """The MerchantBizId stored for ``tid`` (None: the ledger does not know it)."""
        return optional_text(cast("Any", self.redis.hget(self.key(tid), "b")))

    def due(self, queue: Queue, now: float, limit: int) -> list[str]:
        """Transactions of ``queue`` due at ``now``, earliest first (at most ``limit``)."""
        raw = self.redis.zrangebyscore(self.index_key(queue), "-inf", now, start=0, num=limit)
        return [text(member) for member in cast("list[Any]", raw)]

    def get(self, tid: str) -> LedgerEntry | None:
        raw = text_map(self.redis.hgetall(self.key(tid)))
        if not raw:
            return None
        history = {
            State(name[2:]): float(at)
            for name, at in raw.items()
            if name.startswith("t:") and name[2:] in State._value2member_map_
        }
        return LedgerEntry(
            transaction_id=tid,
            state=State(raw["s"]),
            product_code=raw.get("p", ""),
            merchant_biz_id=raw.get("b", ""),
            source=raw.get("src", ""),
            created_at=float(raw.get("c_at", "0")),
            completed_at=float_or_none(raw.get("done_at")),
            deletes_at=float(raw.get("del_at", "0")),
            due_at=float_or_none(raw.get("due")),
            queue=raw.get("q"),
            attempts=int(raw.get("n", "0")),
            reason=raw.get("r"),
            history=dict(sorted(history.items(), key=lambda kv: kv[1])),
        )

    def counts(self) -> dict[State, int]:
        """Transactions per state (every state present, 0 where none)."""
        raw = text_map(self.redis.hgetall(self.counts_key))
        return {state: max(0, int(float(raw.get(state.value, "0")))) for state in State}

    def open_count(self) -> int:
        return sum(n for s, n in self.counts().items() if s not in FINAL_STATES)

    def deleting_between(self, start: float, end: float) -> int:
        """Open transactions the provider deletes in ``[start, end)``."""
        return int(cast("int", self.redis.zcount(self.deletes_key, start, f"({end}")))

    def deleting_before(self, end: float, limit: int) -> list[str]:
        raw = self.redis.zrangebyscore(self.deletes_key, "-inf", f"({end}", start=0, num=limit)
        return [text(member) for member in cast("list[Any]", raw)]

    def queued(self, queue: Queue) -> int:
        return int(cast("int", self.redis.zcard(self.index_key(queue))))
