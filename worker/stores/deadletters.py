"""Dead letters: work that failed for good, kept with its reason until someone handles it.

One hash per (kind, id) plus two sorted indexes by time of the last failure (all kinds, and per
kind). Adding the same (kind, id) again is idempotent: it updates the reason and bumps the
count. Dead letters have **no TTL**: they are permanent until retried or purged (``idv-worker
dlq``), since silently expiring a failure is the one thing a dead-letter queue must not do.

The payload is what a retry needs (ids and small fields), never images or personal data.

Retrying is plugged in per kind: a flow calls ``store.register_retry(kind, fn)`` where ``fn``
re-enqueues the work (raising if it cannot); ``worker.jobs.register_retries`` registers every
kind on a ``WorkSender``.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import redis

from worker.errors import ConfigurationError
from worker.keys import RedisKeys, validate_kind, validate_ref
from worker.redisio import lua_script, text

MAX_REASON_LENGTH = 500
MAX_DETAIL_LENGTH = 4000
MAX_PAYLOAD_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One failed piece of work; ``first_at``/``last_at`` are epoch seconds."""

    kind: str
    id: str
    reason: str
    count: int
    first_at: float
    last_at: float
    code: str | None = None
    detail: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form (CLI output)."""
        return asdict(self)


RetryFn = Callable[[DeadLetter], None]


class NoRetryHandler(ConfigurationError, LookupError):
    """No flow has registered how to retry dead letters of this kind (a wiring error)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(f"no retry handler is registered for kind {kind!r}")


def _clip(text: str | None, limit: int) -> str:
    if not text:
        return ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _parse(raw: Mapping[Any, Any]) -> DeadLetter | None:
    if not raw:
        return None
    h = {text(k): text(v) for k, v in raw.items()}
    return DeadLetter(
        kind=h["kind"],
        id=h["id"],
        reason=h.get("reason", ""),
        count=int(h.get("count", "0")),
        first_at=float(h.get("first_at", "0")),
        last_at=float(h.get("last_at", "0")),
        code=h.get("code"),
        detail=h.get("detail"),
        payload=json.loads(h.get("payload", "{}")),
    )


class DeadLetterStore:
    """Dead letters in Redis, with a per-kind retry registry (see the module docstring)."""

    def __init__(
        self,
        redis_client: redis.Redis,
        keys: RedisKeys,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis_client
        self.keys = keys
        self._clock = clock
        self._retry: dict[str, RetryFn] = {}
        self._add = self.redis.register_script(lua_script("worker.stores", "deadletter_add"))
        self._remove = self.redis.register_script(lua_script("worker.stores", "deadletter_remove"))

    def _keys(self, kind: str, id: str) -> list[str]:
        return [
            self.keys.deadletter(kind, id),
            self.keys.deadletter_index,
            self.keys.deadletter_kind_index(kind),
        ]

    def add(
        self,
        kind: str,
        id: str,
        reason: str,
        *,
        code: str | None = None,
        detail: str | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> DeadLetter:
        """Record (or update) the dead letter of ``kind``/``id``; returns it with its count.

        ``reason`` and ``detail`` are clipped to their maximum length (a failure must always
        be recordable); ``payload`` must be a small JSON object, or ``ValueError``.
        """
        keys = self._keys(kind, id)
        payload_json = ""
        if payload is not None:
            payload_json = json.dumps(dict(payload), separators=(",", ":"), sort_keys=True)
            if len(payload_json.encode("utf-8")) > MAX_PAYLOAD_BYTES:
                raise ValueError(f"dead-letter payload over {MAX_PAYLOAD_BYTES} bytes")
        args = [
            kind,
            id,
            _clip(reason, MAX_REASON_LENGTH) or "unknown",
            _clip(code, 200),
            _clip(detail, MAX_DETAIL_LENGTH),
            payload_json,
            repr(self._clock()),
            f"{kind}:{id}",
        ]
        raw = self._add(keys=keys, args=args)
        # HGETALL comes back from Lua as a flat [field, value, ...] list.
        entry = _parse(dict(zip(raw[::2], raw[1::2], strict=True)))
        assert entry is not None
        return entry

    def get(self, kind: str, id: str) -> DeadLetter | None:
        """The dead letter of ``kind``/``id``, or ``None``."""
        raw = cast("Mapping[Any, Any]", self.redis.hgetall(self.keys.deadletter(kind, id)))
        return _parse(raw)

    def list(
        self, kind: str | None = None, limit: int = 50, offset: int = 0
    ) -> Sequence[DeadLetter]:
        """Dead letters, most recent failure first, optionally of one kind."""
        if limit <= 0 or offset < 0:
            return []
        index = (
            self.keys.deadletter_index if kind is None else self.keys.deadletter_kind_index(kind)
        )
        members = cast(
            "builtins.list[Any]", self.redis.zrevrange(index, offset, offset + limit - 1)
        )
        refs: builtins.list[tuple[str, str]] = []
        for member in members:
            name = text(member)
            if kind is None:
                member_kind, _, ref = name.partition(":")
                refs.append((member_kind, ref))
            else:
                refs.append((kind, name))
        pipe = self.redis.pipeline(transaction=False)
        for k, i in refs:
            pipe.hgetall(self.keys.deadletter(k, i))
        entries = [_parse(raw) for raw in pipe.execute()]
        # An entry removed between the two reads is simply skipped.
        return [e for e in entries if e is not None]

    def count(self, kind: str | None = None) -> int:
        """How many dead letters there are (of one kind, or in all)."""
        index = (
            self.keys.deadletter_index if kind is None else self.keys.deadletter_kind_index(kind)
        )
        return cast("int", self.redis.zcard(index))

    def remove(self, kind: str, id: str) -> bool:
        """Delete the dead letter (handled or purged); returns whether it existed."""
        return self._remove_if(kind, id, None) == 1

    def _remove_if(self, kind: str, id: str, expected_count: int | None) -> int:
        expected = "" if expected_count is None else str(expected_count)
        result = self._remove(keys=self._keys(kind, id), args=[f"{kind}:{id}", id, expected])
        return int(result)

    def register_retry(self, kind: str, fn: RetryFn) -> None:
        """Tell the store how to re-enqueue dead letters of ``kind`` (``fn`` raises on failure)."""
        self._retry[validate_kind(kind)] = fn

    def has_retry(self, kind: str) -> bool:
        """Whether a retry handler is registered for ``kind``."""
        return kind in self._retry

    def retry(self, kind: str, id: str) -> bool:
        """Re-enqueue one dead letter through its kind's handler and remove it on success.

        Returns ``False`` if there is no such dead letter; raises ``NoRetryHandler`` if no
        handler is registered, and whatever the handler raises (the entry is then kept). An
        entry that failed again while the handler ran (its count changed) is kept too.
        """
        validate_ref(id)
        fn = self._retry.get(kind)
        if fn is None:
            raise NoRetryHandler(kind)
        entry = self.get(kind, id)
        if entry is None:
            return False
        fn(entry)
        self._remove_if(kind, id, entry.count)
        return True
