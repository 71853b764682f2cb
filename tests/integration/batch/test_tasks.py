"""The task module's hooks on a real broker: dead-letter retries and the worker-start sweep."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace
from typing import Any

import redis

from tasks.batch import _sweep
from worker.app import create_app
from worker.batch import BatchStore, ItemSpec, encode_chunk
from worker.jobs import KIND_CHUNK
from worker.keys import RedisKeys
from worker.settings import load_settings
from worker.wiring import Cli


def _queued(client: redis.Redis) -> list[tuple[str, list[Any]]]:
    """(task name, args) of every message waiting in ``idv.bulk``."""
    out = []
    for raw in client.lrange("idv.bulk", 0, -1):
        message = json.loads(raw)
        args = json.loads(base64.b64decode(message["body"]))[0]
        out.append((message["headers"]["task"], args))
    return sorted(out)


def test_dead_lettered_chunks_are_retried_through_the_dlq(
    redis_url: str, redis_client: redis.Redis
) -> None:
    settings = load_settings(redis_url=redis_url)
    with Cli(settings, redis=redis_client) as cli:
        letters = cli.retrying_deadletters()
        letters.add(KIND_CHUNK, "b1:3", "boom", payload={"batch": "b1", "chunk": 3})
        assert letters.retry(KIND_CHUNK, "b1:3")
        assert _queued(redis_client) == [("idv.batch.chunk", ["b1", 3])]
        assert letters.get(KIND_CHUNK, "b1:3") is None


def test_a_starting_worker_rearms_running_batches(
    redis_url: str, redis_client: redis.Redis
) -> None:
    settings = load_settings(redis_url=redis_url)
    store = BatchStore(redis_client, RedisKeys(settings.redis.namespace), settings.batch)
    spec = ItemSpec(source="a.jpg", doc_type="01000000")
    for batch, state in (("brun", "running"), ("bpaused", "paused")):
        store.create(batch, {"chunk_size": 1})
        for chunk in range(2):
            store.write_chunk(batch, chunk, encode_chunk([(chunk + 2, spec)]), 1)
        store.set_meta(batch, submitted=1, total_rows=2, total_chunks=2, state=state)
        store.drop_marker(batch, "wd")
    # Chunk 1 of the running batch lost its message (its worker died after taking it).
    store.acquire_chunk("brun", 1, "dead", 0.001)
    app = create_app(settings)
    _sweep(sender=SimpleNamespace(app=app))
    queued = _queued(redis_client)
    assert ("idv.batch.chunk", ["brun", 1]) in queued
    # The watchdog's next round is a due time in the takeover index, not a delayed message.
    assert redis_client.zscore("idv:due", "wd:brun") is not None
    assert redis_client.zscore("idv:due", "wd:bpaused") is None
    assert not any(name == "idv.batch.watchdog" for name, _ in queued)
    assert not any(args[0] == "bpaused" for _, args in queued)
    app.close()
