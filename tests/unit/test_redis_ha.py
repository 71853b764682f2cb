"""Redis high availability settings: sentinels validated at load and applied to every client
(the stores and the limiter through ``redisio.connect``, the broker through kombu's Sentinel
transport with the restart fix of ``worker.broker``)."""

from __future__ import annotations

import pytest
from redis.sentinel import SentinelConnectionPool, SentinelManagedConnection

from worker.app import celery_config
from worker.redisio import (
    CONNECT_TIMEOUT_S,
    ReconnectingConnection,
    RedisTarget,
    SentinelRedis,
    broker_target,
    connect,
    redis_target,
)
from worker.settings import SettingsError, load_settings

SENTINELS = {"redis_sentinels": "10.0.0.1:26379, 10.0.0.2", "redis_sentinel_master": "idv"}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("IDV_"):
            monkeypatch.delenv(name)


def test_sentinels_and_master_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDV_REDIS_SENTINELS", "10.0.0.1:26380,[fd00::1]:26381,sentinel-3")
    monkeypatch.setenv("IDV_REDIS_SENTINEL_MASTER", "idv")
    monkeypatch.setenv("IDV_REDIS_URL", "redis://:pw@unused/2")
    target = redis_target(load_settings().redis)
    assert target.sentinels == (("10.0.0.1", 26380), ("fd00::1", 26381), ("sentinel-3", 26379))
    assert target.master == "idv"
    assert target.url == "redis://:pw@unused/2"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"IDV_REDIS_SENTINELS": "10.0.0.1:26379"}, "IDV_REDIS_SENTINEL_MASTER"),
        ({"IDV_REDIS_SENTINEL_MASTER": "idv"}, "IDV_REDIS_SENTINEL_MASTER"),
        (
            {"IDV_REDIS_SENTINELS": "10.0.0.1:port", "IDV_REDIS_SENTINEL_MASTER": "idv"},
            "IDV_REDIS_SENTINELS",
        ),
        ({"IDV_REDIS_URL": "sentinel://10.0.0.1:26379/0"}, "IDV_REDIS_URL"),
        ({"IDV_BROKER_URL": "sentinel://10.0.0.1:26379"}, "IDV_BROKER_URL"),
        (
            {
                "IDV_REDIS_URL": "unix:///run/redis.sock",
                "IDV_REDIS_SENTINELS": "10.0.0.1",
                "IDV_REDIS_SENTINEL_MASTER": "idv",
            },
            "IDV_REDIS_SENTINELS",
        ),
    ],
)
def test_invalid_sentinel_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], variable: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert [var for var, _ in info.value.problems] == [variable]


def test_stores_and_limiter_get_a_sentinel_managed_client_with_the_project_timeouts() -> None:
    settings = load_settings(redis_url="redis://:pw@unused/3", **SENTINELS)
    client = connect(redis_target(settings.redis), fail_fast=True, socket_timeout=2.0)
    try:
        assert isinstance(client, SentinelRedis)
        pool = client.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        assert pool.service_name == "idv"
        kwargs = pool.connection_kwargs
        shown = {
            k: kwargs[k] for k in ("db", "password", "socket_timeout", "health_check_interval")
        }
        assert shown == {
            "db": 3,
            "password": "pw",
            "socket_timeout": 2.0,
            "health_check_interval": 30,
        }
        assert kwargs["retry"].get_retries() == 1
        assert pool.connection_class is SentinelManagedConnection
        assert client.sentinel_manager is not None
        sentinels = client.sentinel_manager.sentinels
        assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [26379, 26379]
    finally:
        client.close()


def test_a_plain_url_reconnects_on_readonly_and_retries_connection_errors() -> None:
    client = connect("redis://127.0.0.1:1/0")
    try:
        assert client.connection_pool.connection_class is ReconnectingConnection
        retry = client.connection_pool.connection_kwargs["retry"]
        assert retry.get_retries() == 3
    finally:
        client.close()


def test_the_broker_uses_the_sentinel_transport_with_the_master_name() -> None:
    settings = load_settings(redis_url="redis://:pw@unused/1", **SENTINELS)
    config = celery_config(settings)
    assert config["broker_url"] == (
        "sentinel://:pw@10.0.0.1:26379/1;sentinel://:pw@10.0.0.2:26379/1"
    )
    assert config["broker_transport"] == "worker.broker:SentinelTransport"
    options = config["broker_transport_options"]
    assert options["master_name"] == "idv"
    assert options["sentinel_kwargs"]["socket_connect_timeout"] == CONNECT_TIMEOUT_S


def test_a_separate_broker_url_is_used_as_given() -> None:
    settings = load_settings(broker_url="redis://broker:6379/0", **SENTINELS)
    assert broker_target(settings.redis, settings.broker) == RedisTarget("redis://broker:6379/0")
    config = celery_config(settings)
    assert config["broker_url"] == "redis://broker:6379/0"
    assert config["broker_transport"] == "worker.broker:Transport"
