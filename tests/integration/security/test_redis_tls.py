"""Every Redis client over TLS with an ACL user, against a real TLS-only redis-server.

The server (``tests.fixtures.tls``) has no plaintext port, asks every client for a certificate
of the test CA and knows one ACL user. A real worker, beat, the receiver and the CLI commands
work over it in ``IDV_MODE=production``; a plaintext client (and a client lacking any part of
the policy) is refused; a broker connection's first bytes are a TLS handshake, never ``AUTH``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis
from celery import Celery
from kombu.exceptions import KombuError
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.fixtures.tls import PASSWORD, USER, FirstBytes, TlsRedis, tls_redis
from tests.fixtures.workers import ROOT, CeleryWorker
from worker.app import celery_config, create_app
from worker.commands.doctor import check_beat, check_redis_connection
from worker.devtools import Proc, celery_beat_command, free_port, wait_until
from worker.redisio import connect, redis_target
from worker.settings import Settings, load_settings
from worker.wiring import Cli

__all__ = ["tls_redis"]  # the module's fixture

TLS_HELLO = b"\x16\x03"  # a TLS handshake record, any version


def tls_settings(server: TlsRedis, port: int | None = None, **extra: object) -> Settings:
    env = server.env(port)
    fields: dict[str, object] = {
        "redis_url": env["IDV_REDIS_URL"],
        "redis_tls_ca_file": env["IDV_REDIS_TLS_CA_FILE"],
        "redis_tls_cert_file": env["IDV_REDIS_TLS_CERT_FILE"],
        "redis_tls_key_file": env["IDV_REDIS_TLS_KEY_FILE"],
        "mode": "production",
    }
    return load_settings(**{**fields, **extra})


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IDV_")}
    return subprocess.run(
        [sys.executable, "-m", "worker", *args], env={**clean, **env}, cwd=ROOT,
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def refused(client: redis.Redis) -> type[Exception] | None:
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError, redis.AuthenticationError) as exc:
        return type(exc)
    except redis.ResponseError as exc:  # NOAUTH as a reply
        return type(exc)
    finally:
        client.close()
    return None


def test_the_policy_connects_and_every_part_missing_is_refused(tls_redis: TlsRedis) -> None:
    settings = tls_settings(tls_redis)
    client = connect(redis_target(settings.redis))
    try:
        assert client.acl_whoami() in ("idv", b"idv")
    finally:
        client.close()
    certs, port = tls_redis.certs, tls_redis.port
    tls = {"ssl": True, "ssl_ca_certs": str(certs.ca), "ssl_certfile": str(certs.client_cert),
           "ssl_keyfile": str(certs.client_key)}  # fmt: skip
    auth = {"username": USER, "password": PASSWORD}
    kw = {"port": port, "socket_timeout": 2, "socket_connect_timeout": 2,
          "retry": Retry(NoBackoff(), 0)}  # fmt: skip
    assert refused(redis.Redis(**kw, **tls, **auth)) is None  # the whole policy
    assert refused(redis.Redis(**kw, **auth)) is not None  # plaintext
    assert refused(redis.Redis(**kw, **tls)) is not None  # no ACL user
    assert refused(redis.Redis(**kw, **tls, username=USER, password="wrong")) is not None
    no_cert = {k: v for k, v in tls.items() if k not in ("ssl_certfile", "ssl_keyfile")}
    assert refused(redis.Redis(**kw, **no_cert, **auth)) is not None  # no client certificate
    system_cas = {k: v for k, v in tls.items() if k != "ssl_ca_certs"}
    assert refused(redis.Redis(**kw, **system_cas, **auth)) is not None  # not our CA
    # The project's clients too: verification is on by default (system CAs do not know it).
    without_ca = tls_settings(tls_redis, redis_tls_ca_file=None)
    assert refused(connect(redis_target(without_ca.redis), retries=0)) is not None
    unchecked = tls_settings(tls_redis, redis_tls_ca_file=None, redis_tls_verify="none")
    assert refused(connect(redis_target(unchecked.redis), retries=0)) is None


def _round_trip(app: Celery) -> None:
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=5)
        queue = conn.SimpleQueue("idv-tls-probe")
        try:
            queue.put({"probe": 1})
            assert queue.get(timeout=5).payload == {"probe": 1}
        finally:
            queue.close()


def test_a_broker_connection_starts_with_a_tls_handshake(tls_redis: TlsRedis) -> None:
    proxy = FirstBytes(tls_redis.port)
    try:
        settings = tls_settings(tls_redis, port=proxy.port)
        app = create_app(settings)
        _round_trip(app)
        wait_until(lambda: len(proxy.seen) >= 1, timeout=5)
        assert proxy.seen
        assert all(first[:2] == TLS_HELLO for first in proxy.seen), proxy.seen
        assert not any(b"AUTH" in first or PASSWORD.encode() in first for first in proxy.seen)
    finally:
        proxy.close()
    # The neighbour: the same configuration without broker_use_ssl (the transport is the
    # project's, not kombu's "rediss") speaks plaintext, credentials first.
    proxy = FirstBytes(tls_redis.port)
    try:
        config = celery_config(tls_settings(tls_redis, port=proxy.port))
        del config["broker_use_ssl"]
        plain = Celery("plain")
        plain.conf.update(config)
        with pytest.raises((OSError, KombuError, redis.RedisError)):  # the server hangs up
            _round_trip(plain)
        assert any(b"AUTH" in first for first in proxy.seen), proxy.seen
    finally:
        proxy.close()


def test_worker_beat_receiver_and_cli_over_tls(
    tls_redis: TlsRedis, s3_endpoint: str, tmp_path: Path
) -> None:
    env = {
        **tls_redis.env(),
        "IDV_NAMESPACE": "tlsrun:",
        "IDV_RECONCILE_EVERY_S": "2",
        "IDV_CALLBACK_TOKENS": "t",
        "IDV_S3_ENDPOINT_URL": s3_endpoint,
        "IDV_S3_ACCESS_KEY_ID": "testing",
        "IDV_S3_SECRET_ACCESS_KEY": "testing",
        "IDV_S3_VERIFY_SSE": "off",
    }
    settings = tls_settings(tls_redis, namespace="tlsrun:", reconcile_every_s=2)
    worker = CeleryWorker(env, concurrency=1, logfile=tmp_path / "worker.log")
    beat = Proc("beat", celery_beat_command(tmp_path / "beat-schedule"), env, tmp_path / "beat.log")
    port = free_port()
    receiver = Proc(
        "receiver", [sys.executable, "-m", "worker", "receiver", "--port", str(port)], env,
        tmp_path / "receiver.log",
    )  # fmt: skip
    runtime = Cli(settings)
    try:
        assert check_redis_connection(runtime).ok
        worker.start()
        worker.wait_ready(timeout=60)
        beat.start()
        # Beat publishes the reconciler's sweep over TLS, the worker runs it and takes its lock.
        beat.wait_for(lambda: check_beat(runtime).ok, timeout=60)
        worker.check_alive()

        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        receiver.start_ready(healthy, timeout=30)
        doctor = cli(env, "doctor", "--check", "redis", "--check", "consumers", "--check", "beat")
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert "TLS (verify required" in doctor.stdout
        assert "user 'idv' with a password" in doctor.stdout
        for command in (["ledger", "status"], ["dlq", "list"], ["quota", "status"]):
            done = cli(env, *command)
            assert done.returncode == 0, (command, done.stdout, done.stderr)
    finally:
        runtime.close()
        for proc in (receiver, beat, worker):
            proc.stop(timeout=10)
    for log in ("worker.log", "beat.log", "receiver.log"):
        assert "refusing to start" not in (tmp_path / log).read_text()
