"""The one Redis connection policy: what production refuses, and what every client is given.

``connection_refusal`` reads only the settings (no connection), so each neighbour of the
refusal is a settings case here; ``tests/integration/security/test_redis_tls.py`` runs the
policy against a real TLS-only redis-server.
"""

from __future__ import annotations

import logging

import pytest

from worker.app import celery_config
from worker.errors import ConfigurationError
from worker.redisio import redis_target
from worker.settings import load_settings
from worker.wiring import connection_refusal

SECURE = "rediss://idv:pw@redis.internal:6380/0"


def refusal(**fields: object) -> str | None:
    return connection_refusal(load_settings(**{"mode": "production", **fields}))


@pytest.mark.parametrize(
    ("url", "lacks"),
    [
        ("redis://127.0.0.1:6379/0", ["no TLS", "no authentication"]),  # neither
        ("rediss://127.0.0.1:6380/0", ["no authentication"]),  # TLS without auth
        ("redis://:pw@127.0.0.1:6379/0", ["no TLS"]),  # auth without TLS
        ("redis://idv:pw@127.0.0.1:6379/0", ["no TLS"]),  # ACL user without TLS
        ("unix:///run/redis.sock", ["no authentication"]),  # a socket needs no TLS, but auth
    ],
)
def test_production_refuses_what_a_redis_url_lacks(url: str, lacks: list[str]) -> None:
    line = refusal(redis_url=url)
    assert line is not None
    assert "\n" not in line
    assert "IDV_REDIS_URL" in line
    assert "IDV_REDIS_ALLOW_INSECURE=true" in line
    for what in lacks:
        assert what in line
    missing = {"no TLS", "no authentication"} - set(lacks)
    assert not any(what in line for what in missing)
    assert "pw" not in line.replace("password", "")  # never the credentials


@pytest.mark.parametrize(
    "url",
    [SECURE, "rediss://:pw@10.0.0.5/1", "unix://:pw@/run/redis.sock", "unix:///s.sock?password=pw"],
)
def test_production_starts_on_tls_with_authentication(url: str) -> None:
    assert refusal(redis_url=url) is None


def test_an_unchecked_certificate_is_refused_a_chain_only_check_is_not() -> None:
    line = refusal(redis_url=SECURE, redis_tls_verify="none")
    assert line is not None
    assert "IDV_REDIS_TLS_VERIFY=none" in line
    assert refusal(redis_url=SECURE, redis_tls_verify="optional") is None


def test_a_separate_broker_is_held_to_the_same_policy() -> None:
    line = refusal(redis_url=SECURE, broker_url="redis://broker.internal:6379/0")
    assert line is not None
    assert "IDV_BROKER_URL" in line
    assert "broker.internal" in line
    assert "redis.internal" not in line  # the store's Redis is fine
    assert refusal(redis_url=SECURE, broker_url="rediss://u:p@broker.internal/0") is None


def test_sentinels_need_tls_and_authentication_too() -> None:
    sentinels = {"redis_url": SECURE, "redis_sentinels": "10.0.0.1:26379",
                 "redis_sentinel_master": "idv"}  # fmt: skip
    line = refusal(**sentinels)
    assert line is not None
    assert "IDV_REDIS_SENTINEL_PASSWORD" in line
    assert "IDV_REDIS_SENTINEL_TLS" not in line  # TLS follows the primary's rediss://
    assert refusal(**sentinels, redis_sentinel_password="spw") is None
    line = refusal(**sentinels, redis_sentinel_password="spw", redis_sentinel_tls=False)
    assert line is not None
    assert "IDV_REDIS_SENTINEL_TLS" in line


def test_allow_insecure_starts_and_says_so_at_every_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        assert refusal(redis_url="redis://127.0.0.1/0", redis_allow_insecure=True) is None
        assert refusal(redis_url="redis://127.0.0.1/0", redis_allow_insecure=True) is None
    warnings = [
        r.getMessage() for r in caplog.records if "IDV_REDIS_ALLOW_INSECURE" in r.getMessage()
    ]
    assert len(warnings) == 2
    assert "no TLS" in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert refusal(redis_url=SECURE, redis_allow_insecure=True) is None
    assert caplog.records == []  # nothing insecure, nothing to say


def test_development_mode_does_not_refuse() -> None:
    settings = load_settings(mode="development", redis_url="redis://127.0.0.1/0")
    assert connection_refusal(settings) is None


def test_a_client_certificate_needs_its_key() -> None:
    with pytest.raises(ConfigurationError, match="IDV_REDIS_TLS_KEY_FILE"):
        load_settings(redis_tls_cert_file="/c.pem")
    with pytest.raises(ConfigurationError, match="IDV_REDIS_TLS_VERIFY"):
        load_settings(redis_tls_verify="sometimes")


TLS = {"redis_tls_ca_file": "/ca.pem", "redis_tls_cert_file": "/c.pem",
       "redis_tls_key_file": "/k.pem"}  # fmt: skip
EXPECTED_SSL = {
    "ssl_cert_reqs": "required",
    "ssl_check_hostname": True,
    "ssl_ca_certs": "/ca.pem",
    "ssl_certfile": "/c.pem",
    "ssl_keyfile": "/k.pem",
}


def test_the_broker_gets_the_same_tls_as_every_other_client() -> None:
    settings = load_settings(redis_url=SECURE, **TLS)
    config = celery_config(settings)
    assert config["broker_transport"] == "worker.broker:Transport"
    assert config["broker_use_ssl"] == EXPECTED_SSL
    assert redis_target(settings.redis).tls.client_options() == EXPECTED_SSL
    plain = celery_config(load_settings(redis_url="redis://127.0.0.1/0", **TLS))
    assert "broker_use_ssl" not in plain
    unchecked = celery_config(load_settings(redis_url=SECURE, redis_tls_verify="none"))
    assert unchecked["broker_use_ssl"] == {"ssl_cert_reqs": "none", "ssl_check_hostname": False}


def test_the_sentinel_broker_gets_tls_and_credentials_for_primary_and_sentinels() -> None:
    settings = load_settings(
        redis_url=SECURE, redis_sentinels="10.0.0.1:26379", redis_sentinel_master="idv",
        redis_sentinel_username="watch", redis_sentinel_password="spw", **TLS,
    )  # fmt: skip
    config = celery_config(settings)
    assert config["broker_transport"] == "worker.broker:SentinelTransport"
    assert config["broker_url"] == "sentinel://idv:pw@10.0.0.1:26379/0"
    assert config["broker_use_ssl"] == EXPECTED_SSL
    sentinel = config["broker_transport_options"]["sentinel_kwargs"]
    assert sentinel["username"] == "watch"
    assert sentinel["password"] == "spw"
    assert sentinel["ssl"] is True
    assert sentinel["ssl_ca_certs"] == "/ca.pem"
    plain = celery_config(settings.replace(redis_sentinel_tls=False))
    assert "ssl" not in plain["broker_transport_options"]["sentinel_kwargs"]
    assert plain["broker_use_ssl"] == EXPECTED_SSL  # the primary keeps its TLS
