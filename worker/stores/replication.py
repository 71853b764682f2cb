"""Writes acknowledged only once replicas hold them: Redis ``WAIT`` after a Lua script.

Replication is asynchronous: a primary answers a write before any replica has it, so a
Sentinel failover can lose writes the old primary acknowledged. With
``IDV_REDIS_WAIT_REPLICAS=n`` a ``ReplicatedScript`` sends ``EVALSHA`` and then
``WAIT n timeout`` in one pipeline. ``WAIT`` counts the replicas that hold *this connection's*
writes, so both commands must travel on the same connection: a pooled client may hand the next
command to another one (whose last write may be older, and ``WAIT`` would answer for that). A
pipeline (``transaction=False``) holds one connection for everything it sends.

When fewer than ``n`` replicas confirm within the timeout, the write is *not acknowledged*:
``NotReplicated`` is raised. The primary did apply it and may keep it (a slow replica) or lose
it (the failover it announces): the caller retries, so every script guarded this way must be
idempotent (a repeat after an applied write does no harm). ``WAIT`` does not make Redis strongly
consistent: a failover that promotes a replica which did not confirm the write can still lose
it; Sentinel promotes the replica with the most data, which did whenever ``n`` covers them all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis import Redis
from redis.exceptions import NoScriptError, RedisError

from worker.errors import IdvError

if TYPE_CHECKING:
    from worker.settings import RedisSettings


class NotReplicated(IdvError, RedisError):
    """The primary applied a write that fewer replicas than asked confirmed in time.

    Retryable (the guarded writes are idempotent). It is also a ``RedisError``: to a caller it
    is the same as Redis being unreachable (the write may or may not survive).
    """

    retryable = True
    retry_after = 1.0

    def __init__(self, script: str, confirmed: int, wanted: int) -> None:
        self.script = script
        self.confirmed = confirmed
        self.wanted = wanted
        super().__init__(f"{script}: {confirmed} of {wanted} replicas confirmed the write in time")


@dataclass(frozen=True, slots=True)
class ReplicaWait:
    """How many replicas must confirm a guarded write, and for how long to wait (ms)."""

    replicas: int = 0
    timeout_ms: int = 500

    @classmethod
    def from_settings(cls, settings: RedisSettings) -> ReplicaWait:
        """``IDV_REDIS_WAIT_REPLICAS`` and ``IDV_REDIS_WAIT_TIMEOUT_MS``."""
        return cls(settings.redis_wait_replicas, settings.redis_wait_timeout_ms)

    @property
    def enabled(self) -> bool:
        return self.replicas > 0


OFF = ReplicaWait()


class ReplicatedScript:
    """A Lua script whose call returns only once ``wait.replicas`` replicas hold its writes.

    Called as redis-py's ``Script`` (``script(keys=..., args=...)``); with ``wait`` off it is
    exactly that (one ``EVALSHA``).
    """

    def __init__(self, client: Redis, source: str, wait: ReplicaWait, *, name: str = "") -> None:
        self.client = client
        self.source = source
        self.wait = wait
        self.name = name or "script"
        self.sha = hashlib.sha1(source.encode("utf-8"), usedforsecurity=False).hexdigest()
        self._plain = client.register_script(source)

    def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        if not self.wait.enabled:
            return self._plain(keys=list(keys), args=list(args))
        for _ in range(2):
            reply, confirmed = self._send(keys, args)
            if isinstance(reply, NoScriptError):
                # A new primary (or a flushed script cache): nothing ran; load it and send again.
                self.client.script_load(self.source)
                continue
            if isinstance(reply, Exception):
                raise reply
            if isinstance(confirmed, Exception):
                raise confirmed
            if int(confirmed) < self.wait.replicas:
                raise NotReplicated(self.name, int(confirmed), self.wait.replicas)
            return reply
        raise NotReplicated(self.name, 0, self.wait.replicas)  # the script vanished twice

    def _send(self, keys: Sequence[Any], args: Sequence[Any]) -> list[Any]:
        # One pipeline, one connection: WAIT answers for the EVALSHA before it.
        with self.client.pipeline(transaction=False) as pipe:
            pipe.evalsha(self.sha, len(keys), *keys, *args)
            pipe.execute_command(  # type: ignore[no-untyped-call]
                "WAIT", self.wait.replicas, self.wait.timeout_ms
            )
            return pipe.execute(raise_on_error=False)
