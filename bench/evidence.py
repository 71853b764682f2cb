"""Evidence archival and callback intake, measured side by side in one run.

The real stack on loopback (``devstack``): Redis, moto's S3 server, the emulator, the
receiver (uvicorn) and Celery workers; only the bench process drives it.

1. ``ack_p50_ms`` / ``ack_p99_ms``: receiver acknowledgement, client side, ``--acks`` callbacks
   (each a new transaction: token check, SET NX, enqueue) sent 50 at a time. Goal p99 < 50 ms.
2. ``rss_peak_mb``: peak RSS of the Celery pool process (concurrency 1) archiving one video of
   ``--video-mib`` (1 GiB by default), sampled with psutil every 20 ms. Goal < 150 MB.
   ``rss_idle_mb`` is the same process before the task.
3. ``throughput_ratio``: that archive's throughput (video bytes / task seconds: CheckResult,
   download from the emulator, upload to S3, SHA-256 verification) divided by boto3
   ``upload_file`` of the same bytes from local disk to the same S3 endpoint. Goal >= 0.9.
4. ``evidence_latency_p50_s`` / ``evidence_latency_p99_s``: callback received by the receiver ->
   evidence verified in S3 (the record's ``checked_at`` - ``completed_at``), for ``--flows``
   flows completed at once (FACE_LIVENESS: video + face image), two workers x 4 processes.

Usage: ``python bench/evidence.py [--quick]``; the last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import httpx
import psutil
import redis
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.devtools import S3_KEY_ID, S3_SECRET, DevStack, wait_until
from worker.emulator.media import iter_video
from worker.settings import load_settings
from worker.storage import S3ObjectStore

MIB = 1024 * 1024
TOKEN = "bench-callback-token"
BUCKET = "idv-bench"
PRODUCT = "FACE_LIVENESS"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class Bench:
    def __init__(self, stack: DevStack, part_size: int) -> None:
        self.stack = stack
        self.env = stack.env(
            IDV_S3_BUCKET=BUCKET,
            IDV_CALLBACK_TOKENS=TOKEN,
            IDV_LOG_LEVEL="WARNING",
            IDV_EVIDENCE_PART_SIZE=str(part_size),
        )
        self.redis = redis.Redis.from_url(stack.redis_url)
        self.control = httpx.Client(base_url=f"{stack.emulator_url}/_emulator", timeout=120)
        self.settings = load_settings(
            s3_endpoint_url=stack.s3_endpoint, s3_bucket=BUCKET, s3_access_key_id=S3_KEY_ID,
            s3_secret_access_key=S3_SECRET, redis_url=stack.redis_url,
        )  # fmt: skip
        self.store = S3ObjectStore(self.settings.storage)
        self.store.ensure_bucket()
        self._last_tid = ""

    # ---------------------------------------------------------------- helpers

    def emulator(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        response = self.control.request(method, path, json=payload)
        response.raise_for_status()
        return response.json()

    def new_flow(self, callback: bool = True) -> str:
        payload = {"product_code": PRODUCT, "merchant_biz_id": "bench1", "merchant_user_id": "u"}
        if callback:
            payload["callback_url"] = f"{self.stack.receiver_url}/callback?productCode={PRODUCT}"
            payload["callback_token"] = TOKEN
        return str(self.emulator("POST", "transactions", payload)["transaction_id"])

    def record(self, tid: str) -> dict[str, Any] | None:
        raw = self.redis.get(f"idv:result:tx:{tid}")
        return json.loads(raw) if raw else None

    def counter(self, series: str) -> float:
        return float(self.redis.hget("idv:metrics:counters", series) or 0)

    # ---------------------------------------------------------------- 1. acks

    def acks(self, count: int, rate: float, concurrency: int = 50) -> dict[str, float]:
        """Open loop at ``rate``/s (latency), then closed loop at ``concurrency`` (capacity).

        The client is a minimal HTTP/1.1 writer/reader over keep-alive connections, so its own
        overhead stays small next to the receiver's.
        """
        host, port = self.stack.receiver_url.removeprefix("http://").split(":")
        sent = iter(range(2 * count))

        async def timed(pool: asyncio.Queue[Any], out: list[float]) -> None:
            reader, writer = await pool.get()
            n = next(sent)
            query = (f"transactionId=hkack{n:08d}&passed=Y&subCode=200"
                     f"&callbackToken={TOKEN}")  # fmt: skip
            started = time.perf_counter()
            writer.write(f"GET /callback?{query} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            out.append((time.perf_counter() - started) * 1000)
            assert head.startswith(b"HTTP/1.1 200"), head
            pool.put_nowait((reader, writer))

        async def connections(size: int) -> asyncio.Queue[Any]:
            pool: asyncio.Queue[Any] = asyncio.Queue()
            for _ in range(size):
                pool.put_nowait(await asyncio.open_connection(host, int(port)))
            return pool

        async def open_loop() -> list[float]:
            out: list[float] = []
            pool = await connections(100)
            began = time.perf_counter()
            pending = []
            for n in range(count):
                delay = began + n / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                pending.append(asyncio.create_task(timed(pool, out)))
            await asyncio.gather(*pending)
            return out

        async def closed_loop() -> tuple[float, list[float]]:
            out: list[float] = []
            pool = await connections(concurrency)
            began = time.perf_counter()
            await asyncio.gather(*(timed(pool, out) for _ in range(count)))
            return count / (time.perf_counter() - began), out

        latencies = asyncio.run(open_loop())
        capacity, saturated = asyncio.run(closed_loop())
        # These transactions do not exist: drop their messages before any worker starts.
        self.redis.delete("idv.realtime")
        return {
            "ack_rate_per_s": rate,
            "ack_p50_ms": round(percentile(latencies, 50), 2),
            "ack_p99_ms": round(percentile(latencies, 99), 2),
            "ack_capacity_per_s": round(capacity, 1),
            "ack_p99_ms_at_capacity": round(percentile(saturated, 99), 1),
        }

    # ---------------------------------------------------------------- 2+3. one big video

    def big_video(self, size: int, rounds: int) -> dict[str, Any]:
        worker = self.stack.start_worker(self.env, queues=("idv.realtime",), concurrency=1,
                                         name="big")  # fmt: skip
        proc = psutil.Process(worker.wait_children(1)[0])
        self._archive(8 * MIB)  # warm-up: imports, connections, the S3 server's first parts
        idle = proc.memory_info().rss
        peak = idle
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                try:
                    peak = max(peak, proc.memory_info().rss)
                except psutil.Error:
                    return
                stop.wait(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        ours, baseline = [], []
        for _ in range(rounds):  # interleaved, so drift of the S3 server hits both alike
            ours.append(self._archive(size))
            baseline.append(self._upload_file_baseline(size))
        stop.set()
        sampler.join()
        worker.stop()
        ours_rate, base_rate = statistics.mean(ours), statistics.mean(baseline)
        return {
            "video_mib": size / MIB,
            "rss_peak_mb": round(peak / 1e6, 1),
            "rss_idle_mb": round(idle / 1e6, 1),
            "archive_mb_s": round(ours_rate / 1e6, 1),
            "upload_file_mb_s": round(base_rate / 1e6, 1),
            "throughput_ratio": round(ours_rate / base_rate, 3),
        }

    def _archive(self, size: int) -> float:
        """One flow through the worker; returns video bytes per second of task time."""
        before = self.counter('idv_task_seconds_sum{flow="onboarding"}')
        tid = self.new_flow()
        done = self.emulator("POST", f"transactions/{tid}/complete",
                             {"passed": "Y", "video_size": size})  # fmt: skip
        wait_until(lambda: self.record(tid) is not None, timeout=1800, interval=0.2)
        record = self.record(tid)
        assert record is not None
        assert record["evidence"]["video"]["sha256"] == done["video_sha256"], "sha mismatch"
        task_s = self.counter('idv_task_seconds_sum{flow="onboarding"}') - before
        self.store.delete(record["evidence"]["video"]["key"])
        self._last_tid = tid
        return size / task_s

    def _upload_file_baseline(self, size: int) -> float:
        """boto3 ``upload_file`` (default transfer settings) of the same bytes from disk."""
        with tempfile.NamedTemporaryFile(prefix="idv-bench-", suffix=".webm") as tmp:
            for chunk in iter_video(self._last_tid, 0, size, chunk=4 * MIB):
                tmp.write(chunk)
            tmp.flush()
            os.fsync(tmp.fileno())
            client = boto3.session.Session().client(
                "s3", endpoint_url=self.stack.s3_endpoint, aws_access_key_id=S3_KEY_ID,
                aws_secret_access_key=S3_SECRET, region_name="us-east-1",
                config=Config(request_checksum_calculation="when_required",
                              response_checksum_validation="when_required"),
            )  # fmt: skip
            started = time.perf_counter()
            client.upload_file(tmp.name, BUCKET, "baseline/video.webm",
                               ExtraArgs={"ServerSideEncryption": "AES256"})  # fmt: skip
            elapsed = time.perf_counter() - started
            client.delete_object(Bucket=BUCKET, Key="baseline/video.webm")
            client.close()
        return size / elapsed

    # ---------------------------------------------------------------- 4. concurrent flows

    def latency(self, flows: int, sizes: tuple[int, int]) -> dict[str, Any]:
        workers = [
            self.stack.start_worker(
                self.env, queues=("idv.realtime",), concurrency=4, name=f"flows{i}"
            )
            for i in range(2)
        ]
        for worker in workers:
            worker.wait_children(4)
        tids = [self.new_flow() for _ in range(flows)]
        span = sizes[1] - sizes[0]
        for i, tid in enumerate(tids):
            size = sizes[0] + (span * i) // max(1, flows - 1)
            self.emulator("POST", f"transactions/{tid}/complete",
                          {"passed": "Y", "video_size": size, "callback": False})  # fmt: skip
        # Every callback fires at once (the provider's behaviour when flows finish together).
        self._fire_callbacks(tids)
        wait_until(lambda: all(self.record(t) for t in tids), timeout=600, interval=0.25)
        latencies = []
        for tid in tids:
            record = self.record(tid)
            assert record is not None
            assert record["status"] == "complete"
            received = datetime.fromisoformat(record["completed_at"]).timestamp()
            latencies.append(datetime.fromisoformat(record["checked_at"]).timestamp() - received)
        for worker in workers:
            worker.stop()
        return {
            "flows": flows,
            "evidence_latency_p50_s": round(percentile(latencies, 50), 3),
            "evidence_latency_p99_s": round(percentile(latencies, 99), 3),
        }

    def _fire_callbacks(self, tids: list[str]) -> None:
        url = f"{self.stack.receiver_url}/callback"

        async def run() -> None:
            async with httpx.AsyncClient(timeout=10) as client:
                replies = await asyncio.gather(*(
                    client.get(url, params={"transactionId": t, "passed": "Y", "subCode": "200",
                                            "productCode": PRODUCT, "callbackToken": TOKEN})
                    for t in tids
                ))  # fmt: skip
                assert all(r.status_code == 200 for r in replies)

        asyncio.run(run())

    def close(self) -> None:
        self.store.close()
        self.control.close()
        self.redis.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller figures, under 60 s")
    parser.add_argument("--video-mib", type=int, default=None)
    parser.add_argument("--flows", type=int, default=50)
    parser.add_argument("--acks", type=int, default=None)
    parser.add_argument("--ack-rate", type=float, default=100.0, help="callbacks/s, open loop")
    parser.add_argument("--part-mib", type=int, default=8, help="IDV_EVIDENCE_PART_SIZE in MiB")
    args = parser.parse_args()
    video = (args.video_mib or (128 if args.quick else 1024)) * MIB
    rounds = 2 if args.quick else 1
    acks = args.acks or (500 if args.quick else 2000)
    sizes = (256 * 1024, MIB) if args.quick else (MIB, 8 * MIB)
    started = time.monotonic()
    with DevStack() as stack:
        stack.start_redis()
        stack.start_s3()
        stack.start_emulator()
        bench = Bench(stack, args.part_mib * MIB)
        stack.start_receiver(bench.env)
        out: dict[str, Any] = {
            "s3_server": "moto (python -m moto.server)",
            "product": PRODUCT,
            "part_mib": args.part_mib,
        }
        out.update(bench.acks(acks, args.ack_rate))
        print(f"acks: {out}", file=sys.stderr)
        out.update(bench.big_video(video, rounds))
        print(f"big video: {out}", file=sys.stderr)
        out.update(bench.latency(args.flows, sizes))
        bench.close()
    out["quick"] = args.quick
    out["elapsed_s"] = round(time.monotonic() - started, 1)
    out["goals_met"] = {
        "rss_peak_mb<150": out["rss_peak_mb"] < 150,
        "throughput_ratio>=0.9": out["throughput_ratio"] >= 0.9,
        "ack_p99_ms<50": out["ack_p99_ms"] < 50,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
