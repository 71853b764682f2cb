"""Who a record is about: an index from a (hashed) merchant user id to what holds their data.

``idv-worker erase --merchant-user ID`` must find every transaction and batch of a person
without the person's id appearing in Redis in the clear, so the index key is a digest::

    <ns>subject:<subject_hash(id)>   set of "tx:<transaction id>" and "batch:<batch id>"

Members are added where the data is written (batch submission adds ``batch:<id>`` for every
merchant user id of the manifest; a flow that knows the merchant user id of a transaction -
``flows start`` - adds ``tx:<tid>``). The key lives as long as the longest-lived record it
points at (``max(result_ttl_s, batch_ttl_s)``, refreshed on every add).

The digest is SHA-256 over a fixed label, the namespace and the id: enough to keep the id out
of a dump of Redis; a guessable id (a sequence number) can still be confirmed by someone who
hashes candidates, which the audit log accepts in exchange for being able to say whose data
was erased.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import cast

import redis

from worker.keys import RedisKeys, validate_kind, validate_ref

KIND_SUBJECT_TX = "tx"
KIND_SUBJECT_BATCH = "batch"


def subject_hash(value: str, namespace: str = "idv:") -> str:
    """The digest that stands for a personal id (merchant user id, transaction id) at rest."""
    return hashlib.sha256(f"idv-subject\0{namespace}\0{value}".encode()).hexdigest()[:40]


class SubjectIndex:
    """The merchant-user index (see the module docstring)."""

    def __init__(self, redis_client: redis.Redis, keys: RedisKeys, *, ttl_s: int) -> None:
        self.redis = redis_client
        self.namespace = keys.namespace
        self.ttl_s = ttl_s

    def key(self, merchant_user_id: str) -> str:
        """The index key of one merchant user id (its digest, never the id)."""
        return f"{self.namespace}subject:{subject_hash(merchant_user_id, self.namespace)}"

    def add(self, merchant_user_ids: Iterable[str], kind: str, ref: str) -> int:
        """Record that ``kind:ref`` holds data of each of ``merchant_user_ids``."""
        member = f"{validate_kind(kind)}:{validate_ref(ref)}"
        keys = {self.key(u) for u in merchant_user_ids if u}
        if not keys:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.sadd(key, member)
            pipe.expire(key, self.ttl_s)
        pipe.execute()
        return len(keys)

    def refs(self, merchant_user_id: str) -> list[tuple[str, str]]:
        """``(kind, ref)`` of everything indexed for this merchant user id."""
        raw = cast("set[bytes]", self.redis.smembers(self.key(merchant_user_id)))
        out = []
        for member in sorted(m.decode() for m in raw):
            kind, _, ref = member.partition(":")
            out.append((kind, ref))
        return out

    def forget(self, merchant_user_id: str) -> int:
        """Drop the index of one merchant user id."""
        return int(cast("int", self.redis.delete(self.key(merchant_user_id))))

    def drop_member(self, kind: str, ref: str) -> int:
        """Remove ``kind:ref`` from every subject (SCAN; for erasing a whole batch)."""
        member = f"{kind}:{ref}"
        removed = 0
        for key in self.redis.scan_iter(match=f"{self.namespace}subject:*", count=500):
            removed += int(cast("int", self.redis.srem(key, member)))
        return removed
