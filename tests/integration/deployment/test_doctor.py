"""Deployment checks on real servers: two redis-servers (one with AOF, one without), the
emulator, a real Celery worker; `idv-worker doctor`, and the worker and receiver refusing to
start in production on a Redis that would lose data."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.fixtures.emulator import EmulatorHandle, settings_for
from tests.fixtures.servers import RedisServer
from tests.fixtures.workers import ROOT, CeleryWorker
from worker.commands.doctor import (
    check_beat,
    check_consumers,
    check_provider,
    check_redis,
    check_redis_durability,
)
from worker.devtools import Proc, celery_beat_command, wait_until
from worker.keys import RedisKeys
from worker.ledger import Ledger
from worker.settings import load_settings
from worker.stores.durability import inspect_durability
from worker.wiring import EXIT_MISCONFIGURED, Cli, redis_refusal

KEY = "doctor-test-subject-key-0001"  # production requires IDV_SUBJECT_KEY


@pytest.fixture(scope="module")
def aof_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("aof"), persistent=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def bare_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("bare"), persistent=False).start()
    yield server
    server.stop()


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IDV_")}
    return subprocess.run(
        [sys.executable, "-m", "worker", *args], env={**clean, **env}, cwd=ROOT,
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def test_durability_as_each_server_reports_it(
    aof_redis: RedisServer, bare_redis: RedisServer
) -> None:
    with redis.Redis.from_url(aof_redis.url) as client:
        found = inspect_durability(client)
        assert (found.aof, found.policy, found.persistent) == (True, "noeviction", True)
        assert found.problems() == []
        client.config_set("maxmemory-policy", "allkeys-lru")
        try:
            [problem] = inspect_durability(client).problems()
            assert "allkeys-lru" in problem
        finally:
            client.config_set("maxmemory-policy", "noeviction")
    with redis.Redis.from_url(bare_redis.url) as client:
        found = inspect_durability(client)
        assert (found.aof, found.rdb, found.persistent) == (False, False, False)
        assert "no persistence" in found.problems()[0]
        client.config_set("save", "3600 1")  # RDB snapshots alone are persistence too
        try:
            assert inspect_durability(client).problems() == []
        finally:
            client.config_set("save", "")


def test_production_refuses_a_redis_without_persistence(
    aof_redis: RedisServer, bare_redis: RedisServer
) -> None:
    line = redis_refusal(
        load_settings(
            redis_url=bare_redis.url, mode="production", redis_allow_insecure=True, subject_key=KEY
        )
    )
    assert line is not None
    assert "no persistence" in line
    assert "IDV_MODE=development" in line
    assert "\n" not in line
    assert redis_refusal(load_settings(redis_url=bare_redis.url, mode="development")) is None
    assert (
        redis_refusal(
            load_settings(
                redis_url=aof_redis.url,
                mode="production",
                redis_allow_insecure=True,
                subject_key=KEY,
            )
        )
        is None
    )
    # A broker on another Redis is checked too.
    broker = load_settings(
        redis_url=aof_redis.url,
        broker_url=bare_redis.url,
        mode="production",
        redis_allow_insecure=True,
        subject_key=KEY,
    )
    assert redis_refusal(broker) is not None


def test_the_receiver_refuses_to_start_in_production(bare_redis: RedisServer) -> None:
    env = {"IDV_REDIS_URL": bare_redis.url, "IDV_CALLBACK_TOKENS": "t", "IDV_MODE": "production",
           "IDV_REDIS_ALLOW_INSECURE": "true", "IDV_SUBJECT_KEY": KEY}  # fmt: skip
    done = cli(env, "receiver", "--port", "0")
    assert done.returncode == EXIT_MISCONFIGURED
    [line] = [x for x in done.stderr.strip().splitlines() if "refusing" in x]
    assert "no persistence" in line
    # The insecure connection it was allowed is said first, at every start.
    assert "IDV_REDIS_ALLOW_INSECURE=true: starting anyway" in done.stderr


def test_production_refuses_an_insecure_redis_in_every_process(
    aof_redis: RedisServer, tmp_path: Path
) -> None:
    env = {"IDV_REDIS_URL": aof_redis.url, "IDV_CALLBACK_TOKENS": "t", "IDV_MODE": "production",
           "IDV_SUBJECT_KEY": KEY}  # fmt: skip
    done = cli(env, "receiver", "--port", "0")
    assert done.returncode == EXIT_MISCONFIGURED
    [line] = done.stderr.strip().splitlines()
    assert "no TLS" in line
    assert "no authentication" in line
    assert "IDV_REDIS_URL" in line
    assert "IDV_REDIS_ALLOW_INSECURE=true" in line
    log = tmp_path / "worker.log"
    worker = CeleryWorker(env, concurrency=1, logfile=log)
    code, lines = worker.exit_code_and_lines(log, "refusing to start")
    assert code == EXIT_MISCONFIGURED
    [line] = lines
    assert "IDV_REDIS_ALLOW_INSECURE" in line
    beat_log = tmp_path / "beat.log"
    beat = Proc("beat", celery_beat_command(tmp_path / "schedule"), env, beat_log).start()
    try:
        wait_until(lambda: not beat.alive(), timeout=60)
        assert beat.proc is not None
        assert beat.proc.returncode == EXIT_MISCONFIGURED
    finally:
        beat.stop(timeout=5)
    assert "refusing to start: Redis reached insecurely" in beat_log.read_text()
    # The neighbour: with IDV_REDIS_ALLOW_INSECURE=true beat starts, and says why it may.
    allowed_log = tmp_path / "allowed.log"
    allowed = Proc(
        "beat", celery_beat_command(tmp_path / "schedule2"),
        {**env, "IDV_REDIS_ALLOW_INSECURE": "true"}, allowed_log,
    )  # fmt: skip
    try:
        allowed.start()
        wait_until(lambda: "IDV_REDIS_ALLOW_INSECURE=true" in allowed_log.read_text(), 60)
        allowed.wait_for(lambda: "beat: Starting" in allowed_log.read_text(), timeout=30)
        assert allowed.alive()
    finally:
        allowed.stop(timeout=10)


def test_the_worker_refuses_to_start_in_production(bare_redis: RedisServer, tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    env = {"IDV_REDIS_URL": bare_redis.url, "IDV_MODE": "production",
           "IDV_REDIS_ALLOW_INSECURE": "true", "IDV_SUBJECT_KEY": KEY}  # fmt: skip
    worker = CeleryWorker(env, concurrency=1, logfile=log)
    code, lines = worker.exit_code_and_lines(log, "refusing to start")
    assert code == EXIT_MISCONFIGURED
    assert len(lines) == 1, lines
    assert "no persistence" in lines[0]


def test_doctor_redis_checks(aof_redis: RedisServer, bare_redis: RedisServer) -> None:
    good = Cli(load_settings(redis_url=aof_redis.url))
    bare = Cli(load_settings(redis_url=bare_redis.url))
    gone = Cli(load_settings(redis_url="redis://127.0.0.1:1/0"))
    try:
        assert check_redis(good).ok
        assert not check_redis(gone).ok
        assert check_redis_durability(good).ok
        assert "AOF on" in check_redis_durability(good).detail
        result = check_redis_durability(bare)
        assert not result.ok
        assert "appendonly yes" in result.fix
    finally:
        for runtime in (good, bare, gone):
            runtime.close()


def test_doctor_provider_check_is_a_signed_unbilled_read(
    emulator: EmulatorHandle, aof_redis: RedisServer
) -> None:
    runtime = Cli(settings_for(emulator, redis_url=aof_redis.url))
    wrong = Cli(settings_for(emulator, redis_url=aof_redis.url, access_key_secret="nope"))
    try:
        result = check_provider(runtime)
        assert result.ok, result
        refused = check_provider(wrong)
        assert not refused.ok
        assert "signature refused" in refused.detail
    finally:
        runtime.close()
        wrong.close()
    actions = emulator.stats()["actions"]
    assert "DocOcrV2" not in actions  # nothing billed


def test_doctor_beat_check_follows_the_reconciler_sweeps(aof_redis: RedisServer) -> None:
    settings = load_settings(redis_url=aof_redis.url, namespace="doctorbeat:", reconcile_every_s=5)
    runtime = Cli(settings)
    try:
        assert not check_beat(runtime).ok  # never swept
        now = [time.time() - 16]
        with redis.Redis.from_url(aof_redis.url) as client:
            ledger = Ledger(
                client,
                RedisKeys(settings.redis.namespace),
                settings.ledger,
                evidence_window_s=settings.onboarding.evidence_window_s,
                clock=lambda: now[0],
            )
            token = ledger.take_lock("reconcile", ttl_s=1)
            assert token is not None
            assert not check_beat(runtime).ok  # 16 s ago > 3 x 5 s
            ledger.release_lock("reconcile", token)
            now[0] = time.time()
            assert ledger.take_lock("reconcile", ttl_s=1) is not None
        assert check_beat(runtime).ok
    finally:
        runtime.close()


def test_doctor_consumers_check_sees_a_real_worker(
    aof_redis: RedisServer, s3_endpoint: str, tmp_path: Path
) -> None:
    settings = load_settings(redis_url=aof_redis.url)
    runtime = Cli(settings)
    try:
        before = check_consumers(runtime)
        assert not before.ok
        env = {
            "IDV_REDIS_URL": aof_redis.url,
            "IDV_S3_ENDPOINT_URL": s3_endpoint,
            "IDV_S3_ACCESS_KEY_ID": "testing",
            "IDV_S3_SECRET_ACCESS_KEY": "testing",
            "IDV_S3_VERIFY_SSE": "off",
        }
        worker = CeleryWorker(env, concurrency=1, logfile=tmp_path / "w.log")
        worker.start()
        try:
            worker.wait_ready(timeout=60)
            wait_until(lambda: check_consumers(runtime).ok, timeout=30)
        finally:
            worker.stop(timeout=10)
    finally:
        runtime.close()


def test_doctor_command_selects_checks(aof_redis: RedisServer) -> None:
    insecure = {
        "IDV_REDIS_URL": aof_redis.url,
        "IDV_SUBJECT_KEY": KEY,
    }  # production (the default) without TLS
    refused = cli(insecure, "doctor", "--check", "redis")
    assert refused.returncode == 1
    assert "FAIL  redis connection" in refused.stdout
    assert "no TLS" in refused.stdout
    allowed = {**insecure, "IDV_REDIS_ALLOW_INSECURE": "true"}
    done = cli(allowed, "doctor", "--check", "redis")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(IDV_REDIS_ALLOW_INSECURE=true)" in done.stdout
    assert "redis durability" in done.stdout
    assert "s3" not in done.stdout
    assert cli(allowed, "doctor", "--check", "nothing").returncode == 2
