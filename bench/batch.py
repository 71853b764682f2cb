"""Batch OCR figures, measured side by side in one run (issue 5).

1. ``quota_utilisation``: items per second divided by the quota, over one batch processed by
   two real Celery workers (2 pool processes each) at Q=50 against the emulator (quota also
   50 there): (calls - 1) / (last call - first call) / Q. Goal >= 0.98. 10,000 items
   (``--quick``: 1,200).
2. ``cpu_ms_per_item``: CPU time of the worker processes (parents and pool children) per item,
   beside ``baseline_cpu_ms_per_call``: a bare loop in this process that reads the same
   images, base64-encodes, signs and posts DocOcrV2 with the plain client (no limiter,
   claims, records). ``cpu_ratio`` = ours / bare.
3. Submission of a 1,000,000-row manifest (``--quick``: 200,000) by a separate process
   (``idv-worker batch submit``'s code path): ``submit_rows_per_s`` (goal >= 5,000),
   ``submit_rss_peak_mb`` (its peak RSS) beside ``submit_rss_peak_small_mb`` for a manifest
   ten times smaller (constant memory: the two should be close), and
   ``redis_bytes_per_item`` (Redis ``used_memory`` growth per queued row, Celery messages
   included) beside ``naive_redis_bytes_per_item``: one Celery message per row carrying
   the row, as a plain design would enqueue it.

Usage: ``python bench/batch.py [--quick]``; the last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from worker.batch import merchant_biz_id  # noqa: E402
from worker.cloudauth.client import CloudAuthClient  # noqa: E402
from worker.devtools import (  # noqa: E402
    DEMO_ACCESS_KEY_ID,
    DEMO_ACCESS_KEY_SECRET,
    DevStack,
    Proc,
    wait_until,
)
from worker.emulator.samples import generate_samples  # noqa: E402
from worker.ratelimit import bucket_keys, read_account  # noqa: E402
from worker.settings import load_settings  # noqa: E402

QUOTA = 50.0
PRODUCT = "ID_OCR_MIN"

# The submitting process: its own interpreter, so its peak RSS is its own.
SUBMIT_SCRIPT = """
import json, resource, sys, time
from worker.flows import batches
with batches() as api:
    started = time.perf_counter()
    result = api.submit(sys.argv[1])
    seconds = time.perf_counter() - started
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rows": result.total_rows, "seconds": seconds, "peak_mb": peak_kb / 1024,
                  "chunks": result.chunks, "batch_id": result.batch_id}))
"""


def tree_cpu(workers: list[Proc]) -> float:
    """CPU seconds (user + system) of the workers and their pool processes so far."""
    total = 0.0
    for worker in workers:
        for pid in [worker.pid, *worker.children()]:
            try:
                times = psutil.Process(pid).cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
    return total


def sample_images(workdir: Path, count: int) -> list[tuple[str, str]]:
    rows = generate_samples(workdir / "images", count, seed=5)
    return [(r.image, r.doc_type) for r in rows if r.card_side is None]


def write_item_manifest(path: Path, images: list[tuple[str, str]], items: int) -> None:
    """``items`` distinct rows cycling over a few images (``item_id`` keeps them distinct)."""
    with path.open("w", encoding="utf-8") as out:
        for n in range(items):
            image, doc_type = images[n % len(images)]
            out.write(json.dumps({"image": image, "doc_type": doc_type, "item_id": f"i{n}"}))
            out.write("\n")


def throughput(workdir: Path, items: int) -> dict[str, Any]:
    """Part 1 and 2: a batch at Q=50 on two workers, and the bare client loop."""
    images = sample_images(workdir, 60)
    manifest = workdir / "items.jsonl"
    write_item_manifest(manifest, images, items)
    with DevStack(workdir / "stack") as stack:
        stack.start_redis()
        stack.start_s3()
        endpoint = stack.start_emulator(quotas={PRODUCT: QUOTA}, extra=("--log-level", "WARNING"))
        env = stack.env(
            IDV_S3_BUCKET="bench-batch", IDV_QUOTAS=f"{PRODUCT}={QUOTA:g}", IDV_LOG_LEVEL="WARNING"
        )
        subprocess.run(
            [sys.executable, "-c", "from worker.storage import S3ObjectStore\n"
             "from worker.settings import load_settings\n"
             "S3ObjectStore(load_settings().storage).ensure_bucket()"],
            env={**os.environ, **env}, cwd=ROOT, check=True,
        )  # fmt: skip
        workers = [
            stack.start_worker(env, queues=("idv.bulk",), concurrency=2, name=f"b{i}")
            for i in (1, 2)
        ]
        try:
            for worker in workers:
                worker.wait_children(2)
            cpu_before = tree_cpu(workers)
            out = subprocess.run(
                [sys.executable, "-m", "worker", "batch", "submit", str(manifest), "--json"],
                env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            batch_id = json.loads(out.stdout)["batch_id"]
            client = redis.Redis.from_url(stack.redis_url)
            counters = f"idv:{{batch:{batch_id}}}:n"
            meta = f"idv:{{batch:{batch_id}}}:meta"
            wait_until(
                lambda: client.hget(meta, "state") == b"completed",
                timeout=items / QUOTA * 3 + 60,
                interval=0.5,
            )
            cpu_after = tree_cpu(workers)
            n = {k.decode(): v.decode() for k, v in client.hgetall(counters).items()}
            spent = read_account(client, bucket_keys("idv:", PRODUCT, "DocOcrV2"))
            client.close()
        finally:
            for worker in workers:
                worker.stop()
        stats = httpx.get(f"{endpoint}/_emulator/stats", timeout=10).json()
        served = stats["actions"]["DocOcrV2"][PRODUCT]
        baseline = bare_loop(endpoint, images, min(300, items // 4))
    span = float(n["last_at"]) - float(n["first_at"])
    done = int(n.get("done", 0))
    rate = (done - 1) / span if span > 0 else 0.0
    cpu_ms = (cpu_after - cpu_before) / max(1, done) * 1000
    return {
        "items": items,
        "done": done,
        "served": served["served"],
        "throttled": served.get("throttled", 0),
        "items_per_s": round(rate, 3),
        "quota": QUOTA,
        "quota_utilisation": round(rate / QUOTA, 4),
        "cpu_ms_per_item": round(cpu_ms, 3),
        "baseline_cpu_ms_per_call": round(baseline, 3),
        "cpu_ratio": round(cpu_ms / baseline, 3) if baseline else None,
        # Where the quota went from the first call to the last (shares of quota x span).
        "where": {
            "items": round((done - 1) / (QUOTA * span), 5) if span > 0 else None,
            "margin": round(spent.margin_s / span, 5) if span > 0 else None,
            "factor": round(spent.factor_s / span, 5) if span > 0 else None,
            "unclaimed": round(spent.unclaimed_s / span, 5) if span > 0 else None,
            "throttled": round(served.get("throttled", 0) / (QUOTA * span), 5)
            if span > 0
            else None,
        },
    }


def bare_loop(endpoint: str, images: list[tuple[str, str]], calls: int) -> float:
    """CPU ms per DocOcrV2 call of a minimal loop: read, base64, sign, post, parse."""
    settings = load_settings(
        endpoint=endpoint,
        access_key_id=DEMO_ACCESS_KEY_ID,
        access_key_secret=DEMO_ACCESS_KEY_SECRET,
        read_timeout=30,
    ).provider
    httpx.put(f"{endpoint}/_emulator/quotas", json={PRODUCT: 1e9}, timeout=10)
    with CloudAuthClient(settings, max_attempts=1) as client:
        started = time.process_time()
        for n in range(calls):
            image, doc_type = images[n % len(images)]
            data = Path(image).read_bytes()
            client.doc_ocr_v2(
                merchant_biz_id=merchant_biz_id("bare", str(n)),
                merchant_user_id="bench",
                doc_type=doc_type,
                image_base64=base64.b64encode(data).decode(),
            )
        return (time.process_time() - started) / calls * 1000


def write_big_manifest(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write("image,doc_type,item_id\n")
        lines = (
            f"/data/backlog/{n // 1000:04d}/{n:08d}.jpg,01000000,doc{n}\n" for n in range(rows)
        )
        out.writelines(lines)


def submission(workdir: Path, rows: int) -> dict[str, Any]:
    """Part 3: submit a big manifest (no workers: every chunk stays queued)."""
    small = max(1000, rows // 10)
    results: dict[str, Any] = {}
    for label, count in (("small", small), ("big", rows)):
        manifest = workdir / f"manifest-{label}.csv"
        write_big_manifest(manifest, count)
        with DevStack(workdir / f"redis-{label}") as stack:
            redis_url = stack.start_redis()
            client = redis.Redis.from_url(redis_url)
            before = int(client.info("memory")["used_memory"])
            env = {**os.environ, "IDV_MODE": "development", "IDV_REDIS_URL": redis_url,
                   "PYTHONPATH": str(ROOT)}  # fmt: skip
            out = subprocess.run(
                [sys.executable, "-c", SUBMIT_SCRIPT, str(manifest)],
                env=env, cwd=ROOT, capture_output=True, text=True, check=True,
            )  # fmt: skip
            report = json.loads(out.stdout.strip().splitlines()[-1])
            after = int(client.info("memory")["used_memory"])
            client.close()
        manifest.unlink()
        results[label] = {**report, "redis_bytes": after - before}
    naive = naive_bytes_per_item(workdir, min(20_000, max(5_000, rows // 50)))
    big = results["big"]
    return {
        "submit_rows": big["rows"],
        "submit_seconds": round(big["seconds"], 2),
        "submit_rows_per_s": round(big["rows"] / big["seconds"], 1),
        "submit_rss_peak_mb": round(big["peak_mb"], 1),
        "submit_rss_peak_small_mb": round(results["small"]["peak_mb"], 1),
        "submit_small_rows": results["small"]["rows"],
        "redis_bytes_per_item": round(big["redis_bytes"] / big["rows"], 2),
        "naive_redis_bytes_per_item": round(naive, 2),
        "redis_ratio": round(big["redis_bytes"] / big["rows"] / naive, 4) if naive else None,
    }


def naive_bytes_per_item(workdir: Path, rows: int) -> float:
    """Redis growth per row when each row is its own Celery message carrying the row."""
    from worker.app import create_app

    with DevStack(workdir / "redis-naive") as stack:
        redis_url = stack.start_redis()
        client = redis.Redis.from_url(redis_url)
        before = int(client.info("memory")["used_memory"])
        app = create_app(load_settings(redis_url=redis_url))
        with app.producer_or_acquire() as producer:
            for n in range(rows):
                row = {
                    "image": f"/data/backlog/{n // 1000:04d}/{n:08d}.jpg",
                    "doc_type": "01000000",
                    "item_id": f"doc{n}",
                }
                app.send_task("idv.batch.item", args=["b0123456789", row], producer=producer)
        after = int(client.info("memory")["used_memory"])
        app.close()
        client.close()
    return (after - before) / rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs, under 60 s")
    args = parser.parse_args()
    items = 1_200 if args.quick else 10_000
    rows = 200_000 if args.quick else 1_000_000
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="idv-bench-batch-") as tmp:
        workdir = Path(tmp)
        figures: dict[str, Any] = {"quick": args.quick}
        figures.update(throughput(workdir, items))
        print(json.dumps({k: figures[k] for k in sorted(figures)}), file=sys.stderr)
        figures.update(submission(workdir, rows))
    figures["bench_seconds"] = round(time.monotonic() - started, 1)
    print(
        f"quota utilisation {figures['quota_utilisation']:.3f} "
        f"({figures['items_per_s']:.2f} items/s at Q={QUOTA:g}, goal >= 0.98); "
        f"worker CPU {figures['cpu_ms_per_item']:.2f} ms/item vs bare "
        f"{figures['baseline_cpu_ms_per_call']:.2f} ms/call; "
        f"submit {figures['submit_rows_per_s']:.0f} rows/s (goal >= 5000), "
        f"peak RSS {figures['submit_rss_peak_mb']} MB ({figures['submit_rss_peak_small_mb']} MB "
        f"for 1/10 of the rows); Redis {figures['redis_bytes_per_item']} B/queued item vs "
        f"{figures['naive_redis_bytes_per_item']} B naive"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
