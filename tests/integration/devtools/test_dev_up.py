"""``idv-worker dev up --json`` as a user runs it: everything answers, and Ctrl-C stops it all."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

import boto3
import httpx
import psutil
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from worker.devtools import LANES, ROOT, wait_until

pytestmark = pytest.mark.slow

# redis, s3, emulator, receiver, one worker per lane, beat
PROCESSES = 4 + len(LANES) + 1


def _first_line(stream: IO[str], timeout: float) -> str:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    return lines.get(timeout=timeout)


def _cli(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", *argv],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_dev_up_serves_every_endpoint_and_stops_cleanly(tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("IDV_")}
    errors = tmp_path / "stderr.txt"
    with errors.open("w") as err:
        up = subprocess.Popen(
            [sys.executable, "-m", "worker", "dev", "up", "--json", "--dir", str(tmp_path / "s")],
            stdout=subprocess.PIPE, stderr=err, text=True, env=base, cwd=ROOT,
        )  # fmt: skip
    try:
        assert up.stdout is not None
        line = _first_line(up.stdout, timeout=180)
        assert line, errors.read_text()
        doc: dict[str, Any] = json.loads(line)
        env = {**base, **doc["env"]}

        assert redis.Redis.from_url(doc["redis_url"]).ping()
        s3 = boto3.client(
            "s3",
            endpoint_url=doc["s3_endpoint_url"],
            aws_access_key_id=env["IDV_S3_ACCESS_KEY_ID"],
            aws_secret_access_key=env["IDV_S3_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        )
        buckets = [b["Name"] for b in s3.list_buckets()["Buckets"]]
        assert env["IDV_S3_BUCKET"] in buckets
        assert httpx.get(f"{doc['endpoint']}/_emulator/health").status_code == 200
        assert httpx.get(f"{doc['receiver_url']}/healthz").status_code == 200
        assert env["IDV_CALLBACK_URL"] == f"{doc['receiver_url']}/callback"
        metrics = httpx.get(doc["metrics_url"])
        assert metrics.status_code == 200
        names = {family.name for family in text_string_to_metric_families(metrics.text)}
        assert "idv_callbacks" in names

        quota = _cli(env, "quota", "status", "--json")
        assert quota.returncode == 0, quota.stderr
        assert "buckets" in json.loads(quota.stdout)
        ledger = _cli(env, "ledger", "status", "--json")
        assert ledger.returncode == 0, ledger.stderr
        assert "counts" in json.loads(ledger.stdout)

        children = psutil.Process(up.pid).children(recursive=True)
        assert len(children) >= PROCESSES + sum(size for _, size in LANES.values())
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(timeout=120)
    assert code == 0, errors.read_text()
    stopped = [ln for ln in errors.read_text().splitlines() if ln.startswith("stopped ")]
    assert len(stopped) == PROCESSES
    wait_until(lambda: all(_gone(child.pid) for child in children), timeout=30)
