"""Result records in Redis and the results stream that announces them.

A *record* is the JSON result of one transaction (kind ``tx``) or one batch item (kind
``item``, ref ``<batch>:<item>``), kept ``settings.result_ttl_s`` (35 days by default, past the
provider's 30-day retention). An *event* on the stream ``<ns>results`` says that a record was
written: flat string fields (type, id, status and pointers such as the S3 key of the evidence),
never images or personal data. The stream is capped at about ``settings.results_stream_maxlen``
entries.

The record and its event are written together by one Lua script (``put_and_publish``), so a
crash never leaves one without the other. The script touches the record key and the stream
key together, which needs a single Redis primary (as the Celery broker does), not Redis Cluster.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, cast

import redis

from worker.errors import InvalidInput
from worker.keys import RedisKeys
from worker.redisio import lua_script, text
from worker.settings import ResultSettings

MAX_EVENT_FIELDS = 32
# Events carry ids, statuses and pointers; anything longer is a payload that belongs in S3.
MAX_EVENT_VALUE_LENGTH = 1024
_FIELD_RE = re.compile(r"[a-z_][a-z0-9_]{0,63}")


class EventError(InvalidInput):
    """An event that cannot go on the results stream (nested, too long, bad field name)."""


def encode_event(event: Mapping[str, object]) -> dict[str, str]:
    """Check an event and turn its values into strings (``None`` fields are dropped).

    Values must be str, int, float or bool; field names lower-case identifiers; ``type``
    and ``id`` are required.
    """
    out: dict[str, str] = {}
    for name, value in event.items():
        if not isinstance(name, str) or not _FIELD_RE.fullmatch(name):
            raise EventError(f"event field name {name!r} must be a lower-case identifier")
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str | int | float):
            text = str(value)
        else:
            raise EventError(f"event field {name!r} must be a flat string, not {type(value)}")
        if len(text) > MAX_EVENT_VALUE_LENGTH:
            raise EventError(f"event field {name!r} is longer than {MAX_EVENT_VALUE_LENGTH}")
        out[name] = text
    if len(out) > MAX_EVENT_FIELDS:
        raise EventError(f"an event has at most {MAX_EVENT_FIELDS} fields")
    for required in ("type", "id"):
        if required not in out:
            raise EventError(f"an event needs a {required!r} field")
    return out


class ResultStore:
    """Result records (JSON, with TTL) and the results stream, on one Redis.

    Downstream systems read the stream with a consumer group, so each event is handled
    once per group and survives a consumer crash until acknowledged::

        r.xgroup_create("idv:results", "webhook", id="0", mkstream=True)  # once
        while True:
            for _stream, entries in r.xreadgroup(
                "webhook", "consumer-1", {"idv:results": ">"}, count=100, block=5000
            ) or []:
                for entry_id, fields in entries:
                    record = store.get_record(fields[b"kind"].decode(), fields[b"id"].decode())
                    ...  # deliver; the record may have expired if the consumer was days late
                    r.xack("idv:results", "webhook", entry_id)

    Entries left pending by a dead consumer are taken over with ``XAUTOCLAIM``. The stream
    is capped (``results_stream_maxlen``), so a group that lags by more loses old events.
    """

    def __init__(
        self,
        redis_client: redis.Redis,
        keys: RedisKeys,
        settings: ResultSettings,
        *,
        record_ttl_s: int | None = None,
        stream_maxlen: int | None = None,
    ) -> None:
        self.redis = redis_client
        self.keys = keys
        self.record_ttl_s = record_ttl_s if record_ttl_s is not None else settings.result_ttl_s
        self.stream_maxlen = (
            stream_maxlen if stream_maxlen is not None else settings.results_stream_maxlen
        )
        if self.record_ttl_s <= 0 or self.stream_maxlen <= 0:
            raise ValueError("record_ttl_s and stream_maxlen must be positive")
        self._put_and_publish = self.redis.register_script(
            lua_script("worker.stores", "result_put_and_publish")
        )

    @property
    def stream(self) -> str:
        """Name of the results stream (``<ns>results``)."""
        return self.keys.results_stream

    def record_key(self, kind: str, id: str) -> str:
        """Redis key of one record (validates ``kind`` and ``id``)."""
        return self.keys.result(kind, id)

    def put_record(
        self, kind: str, id: str, record: Mapping[str, Any], *, create_only: bool = False
    ) -> bool:
        """Store ``record`` as JSON with the TTL; with ``create_only`` keep an existing one.

        Returns whether it was written.
        """
        key = self.record_key(kind, id)
        data = _dumps(record)
        written = self.redis.set(key, data, px=self._ttl_ms, nx=create_only)
        return bool(written)

    def get_record(self, kind: str, id: str) -> dict[str, Any] | None:
        """The record, or ``None`` if there is none (never written, or expired)."""
        # redis-py types its sync and async clients alike; this one is sync.
        raw = cast("bytes | str | None", self.redis.get(self.record_key(kind, id)))
        if raw is None:
            return None
        value = json.loads(raw)
        if not isinstance(value, dict):
            raise ValueError(f"result record {kind}:{id} is not a JSON object")
        return value

    def ttl_s(self, kind: str, id: str) -> float | None:
        """Seconds the record has left, or ``None`` if it does not exist."""
        ms = cast("int", self.redis.pttl(self.record_key(kind, id)))
        return None if ms < 0 else ms / 1000

    def publish(self, event: Mapping[str, object]) -> str:
        """Append ``event`` to the results stream (capped); returns the entry id."""
        fields: dict[Any, Any] = encode_event(event)
        entry_id = self.redis.xadd(self.stream, fields, maxlen=self.stream_maxlen, approximate=True)
        return text(cast("bytes | str", entry_id))

    def put_and_publish(
        self,
        kind: str,
        id: str,
        record: Mapping[str, Any],
        event: Mapping[str, object],
        *,
        create_only: bool = False,
    ) -> str | None:
        """Write the record and append its event in one atomic step.

        The event gets ``kind`` and ``id`` fields naming the record. Returns the stream
        entry id, or ``None`` when ``create_only`` found a record already
        there (then nothing is written and nothing is published).
        """
        key = self.record_key(kind, id)
        # The record's own coordinates always travel with its event.
        fields = encode_event({**event, "kind": kind, "id": id})
        args: list[str | int] = [
            _dumps(record),
            self._ttl_ms,
            1 if create_only else 0,
            self.stream_maxlen,
        ]
        for name, value in fields.items():
            args += [name, value]
        entry_id = self._put_and_publish(keys=[key, self.stream], args=args)
        return None if entry_id is None else text(entry_id)

    def stream_length(self) -> int:
        """Entries currently in the results stream."""
        return cast("int", self.redis.xlen(self.stream))

    @property
    def _ttl_ms(self) -> int:
        return int(self.record_ttl_s * 1000)


def _dumps(record: Mapping[str, Any]) -> str:
    # Compact and sorted: the same result always serialises to the same bytes.
    return json.dumps(dict(record), separators=(",", ":"), sort_keys=True, ensure_ascii=False)
