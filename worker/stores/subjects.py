"""Who a record is about: keyed pseudonyms of merchant user ids, and an index from a pseudonym
to what holds that person's data.

A raw merchant user id is never written to Redis, sent to the provider or put in the audit
stream: everywhere it goes, its *pseudonym* goes instead (``Pseudonyms.merchant_user``,
HMAC-SHA256 under ``IDV_SUBJECT_KEY``, 64 hex characters, the form the provider advises for
``MerchantUserId``). An append-only file, an RDB snapshot, a replica or the provider's records
therefore hold nothing that names the person; without the key a pseudonym cannot be turned back
into an id by hashing candidates. ``idv-worker erase --merchant-user ID`` computes the same
pseudonym to find everything::

    <ns>subject:<pseudonym>   set of "tx:<transaction id>" and "batch:<batch id>"

Members are added where the data is written (batch submission adds ``batch:<id>`` for every
merchant user of the manifest; ``flows start`` adds ``tx:<tid>``). The key lives as long as the
longest-lived record it points at (``max(result_ttl_s, batch_ttl_s)``, refreshed on every add).

Changing the key orphans the index entries and pseudonyms made under the old one: erase them
before rotating, or keep the old key for erasure requests.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import cast

import redis

from worker.errors import ConfigurationError
from worker.keys import RedisKeys, validate_kind, validate_ref
from worker.observability import get_logger
from worker.settings import SubjectSettings

KIND_SUBJECT_TX = "tx"
KIND_SUBJECT_BATCH = "batch"
# The key of a deployment that has none (IDV_MODE=development only: production refuses to start).
DEVELOPMENT_SUBJECT_KEY = "idv-development-subject-key-not-secret"

log = get_logger("subjects")


class Pseudonyms:
    """Keyed pseudonyms (HMAC-SHA256) of personal ids; one label per kind of id."""

    def __init__(self, key: str | bytes) -> None:
        raw = key.encode() if isinstance(key, str) else key
        if not raw:
            raise ValueError("the subject key must not be empty")
        self._key = raw

    @classmethod
    def from_settings(cls, settings: SubjectSettings, *, production: bool = False) -> Pseudonyms:
        """From ``IDV_SUBJECT_KEY``; without it, refused in production (``ConfigurationError``
        naming the variable: nothing may store ids under a public key), else the development
        key and a warning."""
        if settings.subject_key is not None:
            return cls(settings.subject_key.get_secret_value())
        if production:
            raise ConfigurationError(
                "IDV_SUBJECT_KEY: is required in IDV_MODE=production: the key of the pseudonyms "
                "that stand for merchant user ids (e.g. `openssl rand -hex 32`), or set "
                "IDV_MODE=development"
            )
        log.warning(
            "IDV_SUBJECT_KEY is not set: merchant user ids are pseudonymised with the public "
            "development key (anyone can reverse them by hashing candidates); set it before "
            "storing real data"
        )
        return cls(DEVELOPMENT_SUBJECT_KEY)

    def _digest(self, label: str, value: str) -> str:
        message = f"idv-{label}\0{value}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def merchant_user(self, merchant_user_id: str) -> str:
        """What stands for a merchant user id in Redis, at the provider and in the audit."""
        return self._digest("merchant-user", merchant_user_id)

    def transaction(self, transaction_id: str) -> str:
        """What stands for a transaction id in the audit stream."""
        return self._digest("transaction", transaction_id)


class SubjectIndex:
    """The merchant-user index (see the module docstring); it takes pseudonyms, never ids."""

    def __init__(
        self,
        redis_client: redis.Redis,
        keys: RedisKeys,
        *,
        ttl_s: int,
        pseudonyms: Pseudonyms,
    ) -> None:
        self.redis = redis_client
        self.namespace = keys.namespace
        self.ttl_s = ttl_s
        self.pseudonyms = pseudonyms

    def pseudonym(self, merchant_user_id: str) -> str:
        """The pseudonym of a raw merchant user id (what every other method takes)."""
        return self.pseudonyms.merchant_user(merchant_user_id)

    def key(self, pseudonym: str) -> str:
        """The index key of one pseudonym."""
        return f"{self.namespace}subject:{validate_ref(pseudonym)}"

    def add(self, pseudonyms: Iterable[str], kind: str, ref: str) -> int:
        """Record that ``kind:ref`` holds data of each of ``pseudonyms``."""
        member = f"{validate_kind(kind)}:{validate_ref(ref)}"
        keys = {self.key(p) for p in pseudonyms if p}
        if not keys:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.sadd(key, member)
            pipe.expire(key, self.ttl_s)
        pipe.execute()
        return len(keys)

    def refs(self, pseudonym: str) -> list[tuple[str, str]]:
        """``(kind, ref)`` of everything indexed for this pseudonym."""
        raw = cast("set[bytes]", self.redis.smembers(self.key(pseudonym)))
        out = []
        for member in sorted(m.decode() for m in raw):
            kind, _, ref = member.partition(":")
            out.append((kind, ref))
        return out

    def forget(self, pseudonym: str) -> int:
        """Drop the index of one pseudonym."""
        return int(cast("int", self.redis.delete(self.key(pseudonym))))

    def drop_member(self, kind: str, ref: str) -> int:
        """Remove ``kind:ref`` from every subject (SCAN; for erasing a whole batch)."""
        member = f"{kind}:{ref}"
        removed = 0
        for key in self.redis.scan_iter(match=f"{self.namespace}subject:*", count=500):
            removed += int(cast("int", self.redis.srem(key, member)))
        return removed
