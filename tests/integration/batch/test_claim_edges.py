"""Edges of billed-call claims the mutation tier found untested: what a claim records (token,
time, row), a claim on a batch that is gone, and what a refusal says."""

from __future__ import annotations

import httpx
import pytest
import redis

from worker.batch import BatchStore, ClaimingTransport, ClaimRefused, ItemSpec, encode_chunk
from worker.keys import RedisKeys
from worker.settings import load_settings

SPEC = ItemSpec(source="a.jpg", doc_type="01000000")


@pytest.fixture
def store(redis_client: redis.Redis) -> BatchStore:
    settings = load_settings(batch_ttl_s=7200)
    return BatchStore(
        redis_client, RedisKeys(settings.redis.namespace), settings.batch, clock=lambda: 1234.5
    )


def test_a_claim_records_token_time_and_row(store: BatchStore) -> None:
    assert store.create("b1", {"chunk_size": 4, "manifest": "/m.csv"})
    assert store.write_chunk("b1", 0, encode_chunk([(i + 2, SPEC) for i in range(4)]), 4)
    store.set_meta("b1", submitted=1, total_rows=4, total_chunks=1)
    assert store.claim("b1", 3, "item-d", "tok9") == "ok"
    assert store.claims("b1") == {"item-d": "tok9|1234.500000|3"}
    # The same token again is the same attempt; a token that only starts alike is another.
    assert store.claim("b1", 3, "item-d", "tok9") == "ok"
    assert store.claim("b1", 3, "item-d", "tok") == "claimed"
    assert store.claim("b1", 3, "item-d", "tok9|") == "claimed"


def test_a_claim_on_a_batch_that_is_gone_is_refused(store: BatchStore) -> None:
    assert store.claim("never", 0, "item-a", "tok1") == "state:missing"
    assert store.claims("never") == {}


class _Inner(httpx.BaseTransport):
    closed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)

    def close(self) -> None:
        self.closed = True


def test_a_refusal_says_why_and_closing_reaches_the_network() -> None:
    refused = ClaimRefused("claimed")
    assert str(refused) == "call not sent: claimed"
    assert not refused.batch_stopped
    assert ClaimRefused("state:paused").batch_stopped
    inner = _Inner()
    ClaimingTransport(inner).close()
    assert inner.closed
