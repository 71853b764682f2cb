"""ResultStore against a real Redis server."""

from __future__ import annotations

import pytest
import redis

from worker.keys import InvalidKeyError, RedisKeys, item_ref
from worker.settings import Settings, load_settings
from worker.stores import EventError, ResultStore

DAY = 86400


@pytest.fixture
def settings() -> Settings:
    return load_settings(namespace="idv:")


@pytest.fixture
def store(redis_client: redis.Redis, settings: Settings) -> ResultStore:
    return ResultStore(redis_client, RedisKeys(settings.redis.namespace), settings.results)


def test_record_round_trip_with_default_ttl(store: ResultStore, redis_client: redis.Redis) -> None:
    record = {"passed": "Y", "sub_code": "200", "evidence": {"video": "evidence/x/video.webm"}}
    assert store.put_record("tx", "hk123", record) is True
    assert store.get_record("tx", "hk123") == record
    assert redis_client.exists("idv:result:tx:hk123") == 1
    ttl = store.ttl_s("tx", "hk123")
    assert ttl is not None
    assert 35 * DAY - 60 < ttl <= 35 * DAY


def test_ttl_is_configurable(redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDV_RESULT_TTL", "3600")
    monkeypatch.setenv("IDV_RESULTS_STREAM_MAXLEN", "500")
    settings = load_settings()
    assert (settings.results.result_ttl_s, settings.results.results_stream_maxlen) == (3600, 500)
    store = ResultStore(redis_client, RedisKeys(settings.redis.namespace), settings.results)
    store.put_record("tx", "a", {"x": 1})
    ttl = store.ttl_s("tx", "a")
    assert ttl is not None
    assert 3500 < ttl <= 3600
    short = ResultStore(
        redis_client, RedisKeys(settings.redis.namespace), settings.results, record_ttl_s=120
    )
    short.put_record("tx", "b", {"x": 1})
    ttl = short.ttl_s("tx", "b")
    assert ttl is not None
    assert 100 < ttl <= 120


def test_create_only_keeps_the_first_record(store: ResultStore) -> None:
    assert store.put_record("tx", "t1", {"v": 1}, create_only=True) is True
    assert store.put_record("tx", "t1", {"v": 2}, create_only=True) is False
    assert store.get_record("tx", "t1") == {"v": 1}
    assert store.put_record("tx", "t1", {"v": 3}) is True
    assert store.get_record("tx", "t1") == {"v": 3}


def test_batch_item_records_use_the_item_key(store: ResultStore, redis_client: redis.Redis) -> None:
    ref = item_ref("batch-7", "row-000001")
    store.put_record("item", ref, {"ok": True})
    assert redis_client.exists("idv:result:item:batch-7:row-000001") == 1
    assert store.get_record("item", ref) == {"ok": True}
    assert store.get_record("item", item_ref("batch-7", "row-000002")) is None


@pytest.mark.parametrize("bad", ["../x", "a b", "a:", "x/y", "", "a" * 200])
def test_hostile_ids_are_rejected(store: ResultStore, redis_client: redis.Redis, bad: str) -> None:
    with pytest.raises(InvalidKeyError):
        store.put_record("tx", bad, {"v": 1})
    with pytest.raises(InvalidKeyError):
        store.put_and_publish("tx", bad, {"v": 1}, {"type": "t", "id": "x"})
    assert redis_client.dbsize() == 0


def test_publish_flat_string_events(store: ResultStore, redis_client: redis.Redis) -> None:
    entry = store.publish(
        {"type": "onboarding.result", "id": "t1", "status": "passed", "attempt": 2, "ok": True}
    )
    [(entry_id, fields)] = redis_client.xrange("idv:results")
    assert entry_id.decode() == entry
    assert fields == {
        b"type": b"onboarding.result",
        b"id": b"t1",
        b"status": b"passed",
        b"attempt": b"2",
        b"ok": b"true",
    }


@pytest.mark.parametrize(
    "event",
    [
        {"type": "t", "id": "1", "image": {"nested": "dict"}},
        {"type": "t", "id": "1", "face": "A" * 5000},
        {"type": "t", "id": "1", "Bad-Name": "x"},
        {"id": "1"},
        {"type": "t", "id": "1", "blob": b"\xff\xd8"},
    ],
    ids=["nested", "too-long", "field-name", "no-type", "bytes"],
)
def test_events_that_are_not_flat_pointers_are_refused(
    store: ResultStore, redis_client: redis.Redis, event: dict[str, object]
) -> None:
    with pytest.raises(EventError):
        store.publish(event)
    with pytest.raises(EventError):
        store.put_and_publish("tx", "t1", {"v": 1}, event)
    assert redis_client.dbsize() == 0


def test_stream_is_capped(redis_client: redis.Redis, settings: Settings) -> None:
    store = ResultStore(
        redis_client, RedisKeys(settings.redis.namespace), settings.results, stream_maxlen=50
    )
    for i in range(1000):
        store.publish({"type": "t", "id": str(i)})
    # Approximate trimming drops whole stream nodes (100 entries each by default).
    assert 50 <= store.stream_length() <= 150
    [(_, last)] = redis_client.xrevrange("idv:results", count=1)
    assert last[b"id"] == b"999"


def test_put_and_publish_writes_both(store: ResultStore, redis_client: redis.Redis) -> None:
    entry = store.put_and_publish(
        "tx",
        "t1",
        {"passed": "Y"},
        {"type": "onboarding.result", "status": "passed", "video": "evidence/t1/video.webm"},
    )
    assert entry is not None
    assert store.get_record("tx", "t1") == {"passed": "Y"}
    [(entry_id, fields)] = redis_client.xrange("idv:results")
    assert entry_id.decode() == entry
    assert fields[b"kind"] == b"tx"
    assert fields[b"id"] == b"t1"
    assert fields[b"video"] == b"evidence/t1/video.webm"
    ttl = store.ttl_s("tx", "t1")
    assert ttl is not None
    assert ttl > 34 * DAY


def test_put_and_publish_create_only_publishes_once(
    store: ResultStore, redis_client: redis.Redis
) -> None:
    event = {"type": "ocr.item", "status": "done"}
    ref = item_ref("b1", "i1")
    assert store.put_and_publish("item", ref, {"n": 1}, event, create_only=True) is not None
    assert store.put_and_publish("item", ref, {"n": 2}, event, create_only=True) is None
    assert store.get_record("item", ref) == {"n": 1}
    assert store.stream_length() == 1


def test_put_and_publish_writes_nothing_when_the_event_fails(
    store: ResultStore, redis_client: redis.Redis
) -> None:
    # A stream key of the wrong type makes XADD fail inside the script.
    redis_client.set("idv:results", "not a stream")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        store.put_and_publish("tx", "t1", {"v": 1}, {"type": "t"})
    assert store.get_record("tx", "t1") is None


def test_consumer_group_reads_each_event_once(
    store: ResultStore, redis_client: redis.Redis
) -> None:
    redis_client.xgroup_create(store.stream, "webhook", id="0", mkstream=True)
    store.put_and_publish("tx", "t1", {"passed": "Y"}, {"type": "onboarding.result"})
    store.put_and_publish("tx", "t2", {"passed": "N"}, {"type": "onboarding.result"})
    got = redis_client.xreadgroup("webhook", "c1", {store.stream: ">"}, count=10, block=100)
    [(_, entries)] = got
    seen = []
    for entry_id, fields in entries:
        record = store.get_record(fields[b"kind"].decode(), fields[b"id"].decode())
        assert record is not None
        seen.append(record["passed"])
        redis_client.xack(store.stream, "webhook", entry_id)
    assert seen == ["Y", "N"]
    assert redis_client.xreadgroup("webhook", "c2", {store.stream: ">"}, block=100) == []
    assert redis_client.xpending(store.stream, "webhook")["pending"] == 0


def test_works_with_a_decoding_client(redis_url: str, settings: Settings) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    store = ResultStore(client, RedisKeys(settings.redis.namespace), settings.results)
    entry = store.put_and_publish("tx", "t1", {"name": "ü"}, {"type": "t"})
    assert isinstance(entry, str)
    assert isinstance(store.publish({"type": "t", "id": "x"}), str)
    assert store.get_record("tx", "t1") == {"name": "ü"}
    client.close()
