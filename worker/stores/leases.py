"""Leases: at most one holder at a time per item, so a billed call is never made twice at once.

A lease is a Redis key ``<ns>lease:<kind>:<id>`` holding a random token, set with ``SET NX PX``.
Only the holder of the token can renew or release it (compare-and-set in Lua), so a worker whose
lease expired while it was stuck cannot release or extend the lease a newer holder took since.
A lease expires on its own if its holder dies: pick ``ttl_s`` longer than the guarded work, or
``renew`` it while working.

    lease = leases.acquire("ocr", item_ref(batch, item), ttl_s=60)
    if lease is None:
        return  # someone else is on it
    with lease:
        ...  # check no result exists, then make the billed call

or ``with leases.hold("ocr", ref, 60) as lease:``, which raises ``LeaseBusy`` if it is taken.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import cast

import redis

from worker.errors import IdvError
from worker.keys import RedisKeys
from worker.redisio import lua_script

logger = logging.getLogger(__name__)


class LeaseBusy(IdvError):
    """Another holder has the lease on ``kind``/``id``: try again once it may have expired.

    ``retry_after`` (seconds) is when to look again, when the caller knows the lease's length.
    """

    retryable = True

    def __init__(self, kind: str, id: str, *, retry_after: float | None = None) -> None:
        self.kind = kind
        self.id = id
        self.retry_after = retry_after
        super().__init__(f"lease on {kind}:{id} is held by another worker")


def _ttl_ms(ttl_s: float) -> int:
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
    return max(1, round(ttl_s * 1000))


@dataclass(slots=True)
class Lease:
    """A held lease. Use as a context manager to release it on exit."""

    manager: LeaseManager
    kind: str
    id: str
    key: str
    token: str
    ttl_s: float

    def renew(self, ttl_s: float | None = None) -> bool:
        """Extend to ``ttl_s`` (default: the original TTL); ``False`` if it was lost."""
        return self.manager.renew(self, ttl_s)

    def release(self) -> bool:
        """Give the lease up; ``False`` if it had already expired (or was taken over)."""
        return self.manager.release(self)

    def held(self) -> bool:
        """Whether this token still holds the lease."""
        return self.manager.holder_token(self.kind, self.id) == self.token

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.release():
            # The guarded work outlived the TTL: another worker may have started meanwhile.
            logger.warning("lease %s:%s expired before it was released", self.kind, self.id)


class LeaseManager:
    """Acquires, renews and releases leases in one Redis (see the module docstring)."""

    def __init__(self, redis_client: redis.Redis, keys: RedisKeys) -> None:
        self.redis = redis_client
        self.keys = keys
        self._renew = self.redis.register_script(lua_script("worker.stores", "lease_renew"))
        self._release = self.redis.register_script(lua_script("worker.stores", "lease_release"))

    def acquire(self, kind: str, id: str, ttl_s: float) -> Lease | None:
        """Take the lease for ``ttl_s`` seconds, or ``None`` if someone holds it."""
        key = self.keys.lease(kind, id)
        token = secrets.token_hex(16)
        if not self.redis.set(key, token, nx=True, px=_ttl_ms(ttl_s)):
            return None
        return Lease(self, kind, id, key, token, ttl_s)

    def renew(self, lease: Lease, ttl_s: float | None = None) -> bool:
        """Extend ``lease`` if its token still holds it."""
        ttl = lease.ttl_s if ttl_s is None else ttl_s
        return int(self._renew(keys=[lease.key], args=[lease.token, _ttl_ms(ttl)])) == 1

    def release(self, lease: Lease) -> bool:
        """Delete ``lease`` if its token still holds it (never someone else's)."""
        return int(self._release(keys=[lease.key], args=[lease.token])) == 1

    def holder_token(self, kind: str, id: str) -> str | None:
        """The token currently holding ``kind``/``id``, or ``None`` if free."""
        raw = cast("bytes | str | None", self.redis.get(self.keys.lease(kind, id)))
        if raw is None:
            return None
        return raw.decode("ascii") if isinstance(raw, bytes) else raw

    def is_held(self, kind: str, id: str) -> bool:
        """Whether anyone holds the lease on ``kind``/``id``."""
        return self.holder_token(kind, id) is not None

    @contextmanager
    def hold(self, kind: str, id: str, ttl_s: float) -> Iterator[Lease]:
        """Hold the lease for the ``with`` block; ``LeaseBusy`` if it is taken."""
        lease = self.acquire(kind, id, ttl_s)
        if lease is None:
            raise LeaseBusy(kind, id)
        with lease:
            yield lease
