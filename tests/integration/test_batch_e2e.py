"""End to end: ``idv-worker batch`` -> Redis -> two Celery worker processes -> emulator + S3.

2,000 emulator-generated document images, 5 % of them unfit (too small, too large, not an
image, GIF, truncated), submitted with the CLI and processed by two real worker processes in
the bulk lane at a 200 QPS quota. One worker is killed with SIGKILL mid-batch and replaced.
The emulator's own count of served DocOcrV2 calls must equal the number of valid rows, and
every invalid row must be reported with its row number.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.fixtures.emulator import EmulatorHandle, EmulatorServer
from tests.fixtures.s3 import drop_bucket, make_s3_settings, new_bucket_name
from tests.fixtures.servers import RedisServer, wait_until
from tests.fixtures.workers import ROOT, CeleryWorker
from worker.batch.api import BatchAPI
from worker.batch.model import BatchState, ItemStatus
from worker.emulator.samples import generate_samples
from worker.settings import Settings
from worker.storage import S3ObjectStore

pytestmark = pytest.mark.slow

GOOD, BAD = 1900, 100
QUOTA = 200


@dataclass
class Stack:
    env: dict[str, str]
    settings: Settings
    redis: redis.Redis
    store: S3ObjectStore
    logdir: Path

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "worker", "batch", *args],
            env={**os.environ, **self.env, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def worker(self, name: str) -> CeleryWorker:
        return CeleryWorker(
            self.env,
            queues=("idv.bulk",),
            concurrency=2,
            name=name,
            logfile=self.logdir / f"{name}.log",
        ).start()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.logdir.glob("*.log"))
        )


@pytest.fixture(scope="module")
def stack(
    redis_server: RedisServer,
    s3_endpoint: str,
    emulator_server: EmulatorServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    logdir = tmp_path_factory.mktemp("batch-e2e")
    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    bucket = new_bucket_name()
    s3 = make_s3_settings(s3_endpoint, bucket)
    store = S3ObjectStore(s3)
    store.ensure_bucket()
    env = {
        "IDV_ENDPOINT": emulator_server.url,
        "IDV_ACCESS_KEY_ID": "test-access-key",
        "IDV_ACCESS_KEY_SECRET": "test-access-secret",
        "IDV_REDIS_URL": redis_server.url,
        "IDV_S3_ENDPOINT_URL": s3_endpoint,
        "IDV_S3_BUCKET": bucket,
        "IDV_S3_ACCESS_KEY_ID": "testing",
        "IDV_S3_SECRET_ACCESS_KEY": "testing",
        "IDV_S3_REGION": "us-east-1",
        "IDV_QUOTAS": f"ID_OCR_MIN={QUOTA}",
        "IDV_BATCH_CHUNK_SIZE": "50",
        # A killed worker's chunks are retaken within seconds (production: minutes).
        "IDV_BATCH_LEASE_S": "3",
        "IDV_BATCH_WATCHDOG_INTERVAL_S": "1",
        "IDV_LOG_LEVEL": "INFO",
    }
    settings = s3.model_copy(update={"redis_url": redis_server.url})
    try:
        yield Stack(env, settings, r, store, logdir)
    finally:
        drop_bucket(store)
        store.close()
        r.close()


def _counts(stack: Stack, batch_id: str) -> dict[str, Any]:
    out = stack.cli("status", batch_id, "--json")
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_two_thousand_documents_two_workers_one_killed(
    stack: Stack, emulator: EmulatorHandle, tmp_path: Path
) -> None:
    emulator.set_quotas({"ID_OCR_MIN": QUOTA})
    rows = generate_samples(tmp_path / "samples", GOOD, bad=BAD, seed=11)
    manifest = tmp_path / "samples" / "manifest.jsonl"
    bad_rows = {
        i + 1 for i, row in enumerate(rows) if row.expect not in ("ok", "211", "212", "213")
    }
    assert len(bad_rows) == BAD

    workers = [stack.worker("w1"), stack.worker("w2")]
    replacement: CeleryWorker | None = None
    try:
        for worker in workers:
            worker.wait_ready()
        submitted = stack.cli("submit", str(manifest))
        assert submitted.returncode == 0, submitted.stderr
        batch_id = submitted.stdout.strip().splitlines()[-1]

        # Kill one worker (parent and pool children) in the middle of the batch.
        wait_until(lambda: _counts(stack, batch_id)["done"] >= 600, timeout=60, interval=0.2)
        workers[0].kill_hard()
        killed_at = _counts(stack, batch_id)
        assert killed_at["remaining"] > 0, "the batch finished before the kill"
        replacement = stack.worker("w3")

        with BatchAPI(stack.settings) as api:
            try:
                final = api.wait(batch_id, timeout=120)
            except TimeoutError:
                raise AssertionError(f"{api.status(batch_id).as_dict()}\n{stack.logs()}") from None
            problems = list(api.problems(batch_id))
            uncertain = [p for p in problems if p["status"] == ItemStatus.UNCERTAIN.value]
    finally:
        for worker in [*workers, replacement]:
            if worker is not None:
                worker.stop()

    counts = final.counts
    served = emulator.stats()["actions"]["DocOcrV2"]["ID_OCR_MIN"]["served"]
    assert final.state is BatchState.COMPLETED
    assert counts[ItemStatus.INVALID] == BAD
    assert counts[ItemStatus.FAILED] == 0
    assert counts[ItemStatus.DONE] + counts[ItemStatus.UNCERTAIN] == GOOD
    # Every valid row was sent exactly once. A row is uncertain only if the kill hit the
    # instant between its request leaving and its answer being stored: it was served then,
    # unless the kill also cut the request short (below the emulator's notice).
    if not uncertain:
        assert served == GOOD
    else:
        assert GOOD - len(uncertain) <= served <= GOOD
        assert len(uncertain) <= 2  # at most one in flight per killed pool process
    # Every invalid row is reported, with its row number and a reason.
    invalid = {p["row"]: p for p in problems if p["status"] == ItemStatus.INVALID.value}
    assert set(invalid) == bad_rows
    assert all(p["reason"] and p["code"].startswith("Image") for p in invalid.values())

    # The results are in S3 as JSONL, one line per manifest row.
    key = final.results_key
    assert key == f"batches/{batch_id}/results.jsonl"
    lines = stack.store.get_bytes(key, max_size=64 * 1024 * 1024).decode().splitlines()
    assert len(lines) == GOOD + BAD
    assert json.loads(lines[0])["row"] == 1

    # The CLI's views agree.
    status = _counts(stack, batch_id)
    assert status["state"] == "completed"
    assert status["remaining"] == 0
    errors = stack.cli("errors", batch_id, "--json")
    assert errors.returncode == 0
    assert len(errors.stdout.splitlines()) == BAD + len(uncertain)
    export = stack.cli("export", batch_id, "--format", "csv", "--only", "done")
    assert export.returncode == 0, export.stderr
    assert len(export.stdout.splitlines()) == 1 + counts[ItemStatus.DONE]
    listed = stack.cli("list", "--json")
    assert batch_id in {b["batch_id"] for b in json.loads(listed.stdout)["batches"]}
    # Resubmitting the finished manifest changes nothing.
    again = stack.cli("submit", str(manifest), "--json")
    assert json.loads(again.stdout)["created"] is False
    assert emulator.stats()["actions"]["DocOcrV2"]["ID_OCR_MIN"]["served"] == served
