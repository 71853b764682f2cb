"""Encryption found out at start: `idv-worker doctor`, `idv-worker s3 ensure-bucket`, and a
real Celery worker that refuses to start on a store that cannot work as configured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.fixtures.s3 import S3Backend, new_bucket_name
from tests.fixtures.workers import ROOT, CeleryWorker
from worker.settings import Settings
from worker.wiring import EXIT_MISCONFIGURED, check_store_at_start, refuses_to_start


def env_for(settings: Settings, redis_url: str) -> dict[str, str]:
    storage = settings.storage
    secret = storage.s3_secret_access_key
    assert secret is not None
    return {
        "IDV_S3_ENDPOINT_URL": str(storage.s3_endpoint_url),
        "IDV_S3_BUCKET": storage.s3_bucket,
        "IDV_S3_ACCESS_KEY_ID": str(storage.s3_access_key_id),
        "IDV_S3_SECRET_ACCESS_KEY": secret.get_secret_value(),
        "IDV_S3_SSE": storage.s3_sse,
        "IDV_S3_VERIFY_SSE": storage.s3_verify_sse,
        "IDV_REDIS_URL": redis_url,
    }


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IDV_")}
    return subprocess.run(
        [sys.executable, "-m", "worker", *args], env={**clean, **env}, cwd=ROOT,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_doctor_reports_each_store_and_the_fix(
    s3_backend: S3Backend, s3_settings: Settings, redis_url: str
) -> None:
    strict = s3_settings.replace(s3_verify_sse="strict")
    done = cli(env_for(strict, redis_url), "doctor", "--json", "--check", "s3")
    results = {r["name"]: r for r in json.loads(done.stdout)}
    assert results["s3 bucket"]["ok"] is True
    encryption = results["s3 encryption"]
    if s3_backend.echoes_sse:
        assert done.returncode == 0, done.stderr
        assert encryption["detail"].startswith("applied")
    else:
        assert done.returncode == 1
        assert encryption["detail"].startswith("accepted-silently")
        assert "IDV_S3_VERIFY_SSE=reported" in encryption["fix"]
    # The store's own configuration passes.
    assert cli(env_for(s3_settings, redis_url), "doctor", "--check", "s3").returncode == 0


def test_ensure_bucket_is_idempotent_and_doctor_sees_a_missing_bucket(
    s3_backend: S3Backend, redis_url: str
) -> None:
    env = env_for(s3_backend.settings(new_bucket_name()), redis_url)
    missing = cli(env, "doctor", "--check", "s3")
    assert missing.returncode == 1
    assert "idv-worker s3 ensure-bucket" in missing.stdout
    first = cli(env, "s3", "ensure-bucket")
    assert (first.returncode, first.stdout.strip().endswith("created")) == (0, True)
    second = cli(env, "s3", "ensure-bucket")
    assert (second.returncode, second.stdout.strip().endswith("exists")) == (0, True)
    bad = cli({**env, "IDV_S3_ACCESS_KEY_ID": "nobody"}, "s3", "ensure-bucket")
    if s3_backend.name == "s3rver":  # moto accepts any credentials
        assert bad.returncode == 1
        assert "cannot create bucket" in bad.stderr
    assert cli(env, "s3").returncode == 2  # no subcommand: usage


def test_probe_at_start_passes_on_a_store_that_reports_sse(
    s3_backend: S3Backend, s3_settings: Settings, redis_url: str, redis_client: redis.Redis
) -> None:
    settings = s3_settings.replace(redis_url=redis_url, s3_verify_sse="strict")
    probe = check_store_at_start(settings)
    assert refuses_to_start(probe) is (not s3_backend.echoes_sse)
    key = f'idv_s3_sse_probe_total{{outcome="{probe.outcome.value}"}}'
    assert float(redis_client.hget("idv:metrics:counters", key) or 0) == 1


def test_worker_refuses_to_start_on_a_store_that_does_not_report_sse(
    s3_backend: S3Backend, s3_settings: Settings, redis_url: str, tmp_path: Path
) -> None:
    if s3_backend.echoes_sse:
        pytest.skip(f"{s3_backend.name} reports SSE: the worker starts")
    strict = s3_settings.replace(s3_verify_sse="strict")
    log = tmp_path / "worker.log"
    worker = CeleryWorker(env_for(strict, redis_url), concurrency=1, logfile=log)
    code, lines = worker.exit_code_and_lines(log, "IDV_S3_VERIFY_SSE")
    assert code == EXIT_MISCONFIGURED
    assert len(lines) == 1, lines
    assert "accepted-silently" in lines[0]
