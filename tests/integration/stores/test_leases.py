"""LeaseManager against a real Redis server."""

from __future__ import annotations

import logging
import threading

import pytest
import redis

from tests.fixtures.servers import wait_until
from worker.keys import InvalidKeyError, RedisKeys, item_ref
from worker.settings import load_settings
from worker.stores import Lease, LeaseBusy, LeaseManager


@pytest.fixture
def leases(redis_client: redis.Redis) -> LeaseManager:
    return LeaseManager(redis_client, RedisKeys(load_settings(namespace="idv:").redis.namespace))


def expire_now(leases: LeaseManager, lease: Lease) -> None:
    """Wait until Redis itself has expired ``lease`` (its TTL must be short)."""
    wait_until(lambda: not leases.is_held(lease.kind, lease.id), timeout=5)


def test_acquire_is_exclusive(leases: LeaseManager, redis_client: redis.Redis) -> None:
    lease = leases.acquire("ocr", item_ref("b1", "i1"), ttl_s=30)
    assert lease is not None
    assert redis_client.get("idv:lease:ocr:b1:i1") == lease.token.encode()
    assert 0 < redis_client.pttl("idv:lease:ocr:b1:i1") <= 30_000
    assert leases.acquire("ocr", item_ref("b1", "i1"), ttl_s=30) is None
    # Another item, or the same id under another kind, is independent.
    assert leases.acquire("ocr", item_ref("b1", "i2"), ttl_s=30) is not None
    assert leases.acquire("tx", "b1", ttl_s=30) is not None
    assert lease.release() is True
    assert not leases.is_held("ocr", item_ref("b1", "i1"))
    assert leases.acquire("ocr", item_ref("b1", "i1"), ttl_s=30) is not None


def test_only_one_of_many_concurrent_callers_wins(leases: LeaseManager, redis_url: str) -> None:
    clients = [redis.Redis.from_url(redis_url) for _ in range(8)]
    managers = [
        LeaseManager(c, RedisKeys(load_settings(namespace="idv:").redis.namespace)) for c in clients
    ]
    barrier = threading.Barrier(len(managers))
    won: list[Lease] = []
    lock = threading.Lock()

    def contend(manager: LeaseManager) -> None:
        barrier.wait()
        lease = manager.acquire("ocr", "item-1", ttl_s=30)
        if lease is not None:
            with lock:
                won.append(lease)

    threads = [threading.Thread(target=contend, args=(m,)) for m in managers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(won) == 1
    assert leases.holder_token("ocr", "item-1") == won[0].token
    for c in clients:
        c.close()


def test_lease_expires_on_its_own(leases: LeaseManager) -> None:
    lease = leases.acquire("tx", "t1", ttl_s=0.05)
    assert lease is not None
    expire_now(leases, lease)
    assert leases.acquire("tx", "t1", ttl_s=30) is not None


def test_stale_holder_cannot_release_or_renew_a_newer_lease(leases: LeaseManager) -> None:
    stale = leases.acquire("tx", "t1", ttl_s=0.05)
    assert stale is not None
    expire_now(leases, stale)
    newer = leases.acquire("tx", "t1", ttl_s=30)
    assert newer is not None

    assert stale.release() is False
    assert stale.renew(60) is False
    assert stale.held() is False
    assert newer.held() is True
    assert leases.holder_token("tx", "t1") == newer.token
    assert newer.release() is True
    assert not leases.is_held("tx", "t1")


def test_renew_extends_the_ttl(leases: LeaseManager, redis_client: redis.Redis) -> None:
    lease = leases.acquire("tx", "t1", ttl_s=1)
    assert lease is not None
    assert lease.renew(120) is True
    assert redis_client.pttl("idv:lease:tx:t1") > 100_000
    assert lease.renew() is True  # back to the original TTL
    assert redis_client.pttl("idv:lease:tx:t1") <= 1000


def test_context_manager_releases_even_on_error(leases: LeaseManager) -> None:
    def billed_call() -> None:
        with leases.hold("ocr", "i1", ttl_s=30) as lease:
            assert lease.held()
            raise RuntimeError("billed call failed")

    with pytest.raises(RuntimeError, match="billed call failed"):
        billed_call()
    assert not leases.is_held("ocr", "i1")

    lease2 = leases.acquire("ocr", "i1", ttl_s=30)
    assert lease2 is not None
    with lease2:
        with pytest.raises(LeaseBusy) as info, leases.hold("ocr", "i1", ttl_s=30):
            pass
        assert (info.value.kind, info.value.id) == ("ocr", "i1")
        assert lease2.held()
    assert not leases.is_held("ocr", "i1")


def test_outliving_the_ttl_is_logged(
    leases: LeaseManager, caplog: pytest.LogCaptureFixture
) -> None:
    lease = leases.acquire("ocr", "slow", ttl_s=0.05)
    assert lease is not None
    with caplog.at_level(logging.WARNING, logger="worker.stores.leases"), lease:
        expire_now(leases, lease)
    assert "ocr:slow expired before it was released" in caplog.text


def test_bad_arguments(leases: LeaseManager, redis_client: redis.Redis) -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        leases.acquire("tx", "t1", ttl_s=0)
    with pytest.raises(InvalidKeyError):
        leases.acquire("tx", "../t1", ttl_s=5)
    with pytest.raises(InvalidKeyError):
        leases.acquire("TX", "t1", ttl_s=5)
    assert redis_client.dbsize() == 0
