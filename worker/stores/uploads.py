"""The multipart uploads this deployment started and has not ended: "the keys it started".

``UploadRegistry`` is the ``worker.storage.UploadTracker`` the runtime gives the S3 adapter:
one sorted set (``RedisKeys.s3_uploads``), member = ``[key, upload_id]`` as JSON, score = the
time the upload started. An upload is removed when it completes or is aborted; one whose abort
failed, or whose worker died, stays until the stale-upload sweep
(``worker.evidence.UploadSweeper``) aborts it.

Recording never fails an upload: a Redis error is logged and the upload goes on untracked (it
costs storage at worst; the sweep's listing by exact key finds the other uploads of a key it
knows). The set has a TTL, renewed on every upload started.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import redis

from worker.keys import RedisKeys

logger = logging.getLogger(__name__)

# Far beyond any sensible stale-upload age: the set only expires when nothing was uploaded
# for this long, and then nothing recent is left in it.
INDEX_TTL_S = 30 * 86400


@dataclass(frozen=True, slots=True)
class TrackedUpload:
    """One upload in the registry; ``started_at`` in epoch seconds."""

    key: str
    upload_id: str
    started_at: float


def _member(key: str, upload_id: str) -> str:
    return json.dumps([key, upload_id], separators=(",", ":"))


class UploadRegistry:
    """Index of open multipart uploads in Redis (an ``UploadTracker`` for the S3 adapter)."""

    def __init__(
        self, client: redis.Redis, keys: RedisKeys, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._redis = client
        self._key = keys.s3_uploads
        self._clock = clock

    # --- UploadTracker (never raises) ---

    def started(self, key: str, upload_id: str) -> None:
        """Record an upload just created."""
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.zadd(self._key, {_member(key, upload_id): self._clock()})
            pipe.expire(self._key, INDEX_TTL_S)
            pipe.execute()
        except redis.RedisError as exc:
            logger.warning("could not record multipart upload of %s: %s", key, type(exc).__name__)

    def ended(self, key: str, upload_id: str) -> None:
        """Forget an upload completed or aborted."""
        try:
            self.forget(key, upload_id)
        except redis.RedisError as exc:
            logger.warning("could not forget multipart upload of %s: %s", key, type(exc).__name__)

    # --- the sweep's side (raises redis errors) ---

    def forget(self, key: str, upload_id: str) -> None:
        """Remove one upload from the index."""
        self._redis.zrem(self._key, _member(key, upload_id))

    def older_than(self, cutoff: float, limit: int = 1000) -> list[TrackedUpload]:
        """Uploads started at or before ``cutoff`` (epoch seconds), oldest first."""
        rows = cast(
            "list[tuple[bytes | str, float]]",
            self._redis.zrangebyscore(
                self._key, "-inf", cutoff, start=0, num=limit, withscores=True
            ),
        )
        out = []
        for member, score in rows:
            text = member.decode() if isinstance(member, bytes) else str(member)
            key, upload_id = json.loads(text)
            out.append(TrackedUpload(str(key), str(upload_id), float(score)))
        return out

    def started_at(self, key: str, upload_id: str) -> float | None:
        """When a tracked upload started, or None if it is not tracked."""
        score = cast("float | None", self._redis.zscore(self._key, _member(key, upload_id)))
        return None if score is None else float(score)

    def count(self) -> int:
        """Uploads tracked (open, or left behind)."""
        return cast("int", self._redis.zcard(self._key))
