"""Whether a Redis keeps what the worker writes: persistence (AOF or RDB) and no eviction.

The ledger, batches, leases, dead letters and the Celery queues live in Redis. A Redis without
persistence loses all of it on a restart; one whose ``maxmemory-policy`` evicts drops keys when
it fills up. ``inspect_durability`` finds out with ``CONFIG GET`` (``appendonly``, ``save``,
``maxmemory-policy``), falling back on ``INFO`` where ``CONFIG`` is disabled (managed Redis,
where RDB snapshots are then unknown). The worker and the receiver refuse to start in
``IDV_MODE=production`` on what ``problems`` names; ``idv-worker doctor`` reports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import redis

from worker.redisio import text

NO_EVICTION = "noeviction"


@dataclass(frozen=True, slots=True)
class Durability:
    """What a Redis says about its persistence and eviction (None: it would not say)."""

    aof: bool | None
    rdb: bool | None
    policy: str | None

    @property
    def persistent(self) -> bool | None:
        """True with AOF or RDB snapshots on, False with both off, None if unknown."""
        if self.aof or self.rdb:
            return True
        if self.aof is False and self.rdb is False:
            return False
        return None

    def problems(self) -> list[str]:
        """What would lose data, one short phrase each (empty when nothing would)."""
        out = []
        if self.persistent is False:
            out.append('no persistence (appendonly no, save ""): a restart loses everything')
        if self.policy is not None and self.policy != NO_EVICTION:
            out.append(f"maxmemory-policy {self.policy} evicts keys when memory is full")
        return out

    def describe(self) -> str:
        """One line: ``AOF on, RDB off, maxmemory-policy noeviction``."""

        def flag(value: bool | None) -> str:
            return "unknown" if value is None else ("on" if value else "off")

        return (
            f"AOF {flag(self.aof)}, RDB {flag(self.rdb)}, "
            f"maxmemory-policy {self.policy or 'unknown'}"
        )


def _config(client: redis.Redis, name: str) -> str | None:
    try:
        reply = cast("dict[Any, Any]", client.config_get(name))
    except redis.ResponseError:  # CONFIG disabled or renamed (managed Redis)
        return None
    for key, value in reply.items():
        if text(key) == name:
            return text(value)
    return None


def inspect_durability(client: redis.Redis) -> Durability:
    """Ask ``client``'s server; raises ``redis.RedisError`` if it cannot be reached."""
    appendonly = _config(client, "appendonly")
    save = _config(client, "save")
    policy = _config(client, "maxmemory-policy")
    aof = None if appendonly is None else appendonly.strip().lower() == "yes"
    rdb = None if save is None else bool(save.strip())
    if aof is None or policy is None:
        info = cast("dict[str, Any]", client.info())
        if aof is None and "aof_enabled" in info:
            aof = str(info["aof_enabled"]) == "1"
        if policy is None and "maxmemory_policy" in info:
            policy = str(info["maxmemory_policy"])
    return Durability(aof=aof, rdb=rdb, policy=policy)
