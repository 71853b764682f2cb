"""Writes acknowledged once replicas hold them (``IDV_REDIS_WAIT_REPLICAS``), on a real primary
and replica: what a confirmed write leaves on the replica, what an unconfirmed one raises, and
that repeating one does no harm."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from worker.batch import BatchStore
from worker.devtools import RedisServer, wait_until
from worker.errors import IdvError, is_retryable
from worker.keys import RedisKeys
from worker.ledger import Ledger, State
from worker.settings import SettingsError, load_settings
from worker.stores.replication import NotReplicated, ReplicaWait

NS = "idv:"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, RedisServer]]:
    root = Path(tmp_path_factory.mktemp("replication"))
    primary = RedisServer(root / "primary", persistent=False).start()
    replica = RedisServer(root / "replica", persistent=False, replica_of=primary.port).start()
    try:
        wait_until(replica.in_sync, timeout=30, interval=0.05)
        yield primary, replica
    finally:
        replica.stop()
        primary.stop()


@pytest.fixture(scope="module")
def alone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(Path(tmp_path_factory.mktemp("alone")), persistent=False).start()
    yield server
    server.stop()


def _ledger(client: redis.Redis, wait: ReplicaWait) -> Ledger:
    settings = load_settings()
    return Ledger(client, RedisKeys(NS), settings.ledger, evidence_window_s=1800, replicas=wait)


def _client(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url)


def test_a_confirmed_ledger_write_is_on_the_replica_when_the_call_returns(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    primary, replica = pair
    client, on_replica = _client(primary), _client(replica)
    try:
        ledger = _ledger(client, ReplicaWait(1, 2000))
        mirror = _ledger(on_replica, ReplicaWait())
        for n in range(50):
            tid = f"tx-rep-{n}"
            assert ledger.record_start(tid, "eKYC", f"m-{n}")
            # No polling: WAIT returned only once the replica had applied the write.
            seen = mirror.get(tid)
            assert seen is not None
            assert seen.state is State.INITIALIZED
            assert ledger.on_callback(tid, "eKYC", f"m-{n}").status == "accepted"
            seen = mirror.get(tid)
            assert seen is not None
            assert seen.state is State.COMPLETED
    finally:
        client.close()
        on_replica.close()


def test_a_write_no_replica_confirms_is_not_acknowledged_and_repeating_it_is_harmless(
    alone: RedisServer,
) -> None:
    client = _client(alone)
    try:
        ledger = _ledger(client, ReplicaWait(1, 20))
        with pytest.raises(NotReplicated) as raised:
            ledger.record_start("tx-alone-1", "eKYC", "m-1")
        err = raised.value
        assert (err.confirmed, err.wanted, err.script) == (0, 1, "upsert")
        # A retryable IdvError, and a RedisError: callers that treat Redis being unreachable
        # (the callback intake answers 503) treat it the same way.
        assert isinstance(err, IdvError)
        assert isinstance(err, redis.RedisError)
        assert is_retryable(err)
        # The primary applied it; the repeat finds it and changes nothing.
        plain = _ledger(client, ReplicaWait())
        entry = plain.get("tx-alone-1")
        assert entry is not None
        assert entry.state is State.INITIALIZED
        with pytest.raises(NotReplicated):
            ledger.record_start("tx-alone-1", "eKYC", "m-1")
        assert plain.counts()[State.INITIALIZED] == 1
        # Repeated transitions and claims neither double a counter nor regress a state.
        for _ in range(2):
            with pytest.raises(NotReplicated):
                ledger.on_callback("tx-alone-1", "eKYC", "m-1")
        assert plain.counts()[State.COMPLETED] == 1
        assert plain.counts()[State.INITIALIZED] == 0
        for _ in range(2):
            with pytest.raises(NotReplicated):
                ledger.claim("tx-alone-1", "rt", hold_until=2e10, now=1e10)
        entry = plain.get("tx-alone-1")
        assert entry is not None
        assert entry.attempts == 1
        for _ in range(2):
            with pytest.raises(NotReplicated):
                ledger.finish("tx-alone-1", evidence="stored")
        assert plain.counts()[State.ARCHIVED] == 1
        assert plain.counts()[State.COMPLETED] == 0
    finally:
        client.close()


def test_with_no_replicas_asked_for_a_lone_primary_acknowledges_at_once(
    alone: RedisServer,
) -> None:
    client = _client(alone)
    try:
        ledger = _ledger(client, ReplicaWait(0, 20))
        assert ledger.record_start("tx-alone-off", "eKYC", "m")
        assert ledger.on_callback("tx-alone-off", "eKYC", "m").status == "accepted"
    finally:
        client.close()


def test_asking_for_more_replicas_than_exist_is_not_acknowledged(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    primary, _ = pair
    client = _client(primary)
    try:
        with pytest.raises(NotReplicated) as raised:
            _ledger(client, ReplicaWait(2, 20)).record_start("tx-two", "eKYC", "m")
        assert raised.value.confirmed == 1
    finally:
        client.close()


def test_a_primary_without_the_script_loads_it_and_waits(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    primary, replica = pair
    client, on_replica = _client(primary), _client(replica)
    try:
        ledger = _ledger(client, ReplicaWait(1, 2000))
        assert ledger.record_start("tx-flush-1", "eKYC", "m")
        client.script_flush()  # as a newly promoted primary that never ran it
        assert ledger.record_start("tx-flush-2", "eKYC", "m")
        assert on_replica.exists(ledger.key("tx-flush-2")) == 1
    finally:
        client.close()
        on_replica.close()


def test_a_billed_call_claim_waits_for_the_replica_and_repeats_as_ok(
    pair: tuple[RedisServer, RedisServer], alone: RedisServer
) -> None:
    settings = load_settings()
    primary, replica = pair
    for server, wait in ((primary, ReplicaWait(1, 2000)), (alone, ReplicaWait(1, 20))):
        client = _client(server)
        try:
            store = BatchStore(client, RedisKeys(NS), settings.batch, replicas=wait)
            assert store.create("b-rep", {"product_code": "ID_OCR_MIN"})
            if server is primary:
                assert store.claim("b-rep", 0, "item-0", "tok") == "ok"
                on_replica = _client(replica)
                try:
                    assert on_replica.hexists(store.keys("b-rep").inflight, "item-0")
                finally:
                    on_replica.close()
            else:
                with pytest.raises(NotReplicated):
                    store.claim("b-rep", 0, "item-0", "tok")
                with pytest.raises(NotReplicated):  # the same claim again: applied, unconfirmed
                    store.claim("b-rep", 0, "item-0", "tok")
                assert (
                    BatchStore(client, RedisKeys(NS), settings.batch).claim(
                        "b-rep", 0, "item-0", "tok"
                    )
                    == "ok"
                )
                # Another worker's claim on the item is refused, confirmed or not.
                with pytest.raises(NotReplicated):
                    store.claim("b-rep", 0, "item-0", "other")
                assert (
                    BatchStore(client, RedisKeys(NS), settings.batch).claim(
                        "b-rep", 0, "item-0", "other"
                    )
                    == "claimed"
                )
        finally:
            client.flushall()
            client.close()


@pytest.mark.parametrize(
    ("env", "ok"),
    [
        ({"redis_wait_replicas": "0"}, True),
        ({"redis_wait_replicas": "1", "redis_wait_timeout_ms": "1"}, True),
        ({"redis_wait_replicas": "-1"}, False),
        ({"redis_wait_timeout_ms": "0"}, False),
        ({"redis_wait_timeout_ms": "4000"}, True),
        ({"redis_wait_timeout_ms": "4001"}, False),
    ],
)
def test_wait_settings_are_checked_at_load(env: dict[str, str], ok: bool) -> None:
    if ok:
        wait = ReplicaWait.from_settings(load_settings(**env).redis)
        assert wait.replicas == int(env.get("redis_wait_replicas", "0"))
        assert wait.enabled is (wait.replicas > 0)
        return
    with pytest.raises(SettingsError, match="IDV_REDIS_WAIT_"):
        load_settings(**env)
