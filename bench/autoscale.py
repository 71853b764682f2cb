"""idv_lane_desired_workers over a run whose backlog grows and shrinks.

Against the emulator (150 ms per call, ID_OCR_MIN at 10 QPS; deadlines: realtime 10 s, bulk
60 s): batches of 100, 300 and 600 rows are submitted 0, 15 and 30 s in, and a wave of
onboarding flows 20 s in; one bulk and one realtime worker (2 processes each) work it off.
Every few seconds the gauge's source
(``worker.wiring.demand.DemandSource``, what /metrics shows) is sampled: a table of backlog
and desired workers per lane over time, then one JSON line.

    .venv/bin/python bench/autoscale.py [--every 3] [--flows 40]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from worker.devtools import ROOT, DevStack, free_port
from worker.emulator.samples import generate_samples
from worker.settings import load_settings
from worker.wiring.demand import DemandSource, loads_json

PRODUCT, QUOTA = "ID_OCR_MIN", 10.0
LANES = ("realtime", "bulk", "archival", "webhooks")
BATCHES = ((0.0, 100), (15.0, 300), (30.0, 600))  # (seconds in, rows)
FLOWS_AT = 20.0
TOKEN = "bench-autoscale"


def _submit(env: dict[str, str], manifest: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "worker", "batch", "submit", str(manifest), "--json"],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
        capture_output=True, text=True, check=True,
    )  # fmt: skip


def _flows(emulator: str, callback: str, count: int) -> None:
    with httpx.Client(base_url=f"{emulator}/_emulator/", timeout=10) as http:
        for i in range(count):
            tid = http.post(
                "transactions",
                json={"product_code": "FACE_LIVENESS", "merchant_biz_id": f"biz{i:04d}",
                      "merchant_user_id": f"user-{i}", "callback_url": callback,
                      "callback_token": TOKEN},
            ).json()["transaction_id"]  # fmt: skip
            http.post(f"transactions/{tid}/complete", json={"passed": "Y", "video_size": 200_000})


def run(every: float, flows: int, workdir: Path) -> dict[str, Any]:
    manifests = []
    for n, (_, rows) in enumerate(BATCHES):
        generate_samples(workdir / f"s{n}", rows, seed=n)
        manifests.append(workdir / f"s{n}" / "manifest.jsonl")
    with DevStack(workdir / "stack") as stack:
        stack.start_redis()
        stack.start_s3()
        emulator = stack.start_emulator(quotas={PRODUCT: QUOTA}, extra=("--log-level", "WARNING"))
        httpx.put(f"{emulator}/_emulator/faults", json={"latency_ms": 150}, timeout=10)
        port = free_port()
        env = stack.env(
            IDV_QUOTAS=f"{PRODUCT}={QUOTA:g}",
            IDV_LOG_LEVEL="WARNING",
            IDV_CALLBACK_TOKENS=TOKEN,
            IDV_WORKER_CONCURRENCY="realtime=2,bulk=2",
            IDV_SCALE_DRAIN_S="realtime=10,bulk=60",  # short deadlines: the run lasts minutes
        )
        env["IDV_S3_BUCKET"] = stack.ensure_bucket(env)
        stack.start_receiver(env, port)
        workers = [
            stack.start_worker(env, queues=("idv.bulk",), concurrency=2, name="bulk"),
            stack.start_worker(env, queues=("idv.realtime",), concurrency=2, name="realtime"),
        ]
        for worker in workers:
            worker.wait_children(2)
        wanted = ("IDV_QUOTAS", "IDV_WORKER_CONCURRENCY", "IDV_SCALE_DRAIN_S")
        flat = {k.removeprefix("IDV_").lower(): v for k, v in env.items() if k in wanted}
        settings = load_settings(**flat, redis_url=stack.redis_url)
        client = redis.Redis.from_url(stack.redis_url)
        source = DemandSource(settings, store=client)
        samples: list[dict[str, Any]] = []
        pending = list(zip(BATCHES, manifests, strict=True))
        flows_sent = False
        start = time.monotonic()
        idle_since: float | None = None
        while True:
            t = time.monotonic() - start
            while pending and pending[0][0][0] <= t:
                _submit(env, pending.pop(0)[1])
            if not flows_sent and t >= FLOWS_AT:
                _flows(emulator, f"http://127.0.0.1:{port}/callback", flows)
                flows_sent = True
            loads = {row["lane"]: row for row in loads_json(source.loads())}
            samples.append({"t": round(t, 1), **{lane: loads[lane] for lane in LANES}})
            busy = any(loads[lane]["backlog"] + loads[lane]["in_flight"] for lane in LANES)
            if not pending and flows_sent and not busy:
                idle_since = idle_since or t
                if t - idle_since >= 2 * every:
                    break
            else:
                idle_since = None
            if t > 600:
                break
            time.sleep(every)
        client.close()
    return {"quota": QUOTA, "every_s": every, "samples": samples}


def table(result: dict[str, Any]) -> str:
    head = f"{'t (s)':>6} " + " ".join(
        f"{lane + ' backlog':>17} {'procs':>5} {'pods':>4}" for lane in LANES
    )
    lines = [head, "-" * len(head)]
    for s in result["samples"]:
        cells = " ".join(
            f"{s[lane]['backlog'] + s[lane]['in_flight']:>17} {s[lane]['processes']:>5} "
            f"{s[lane]['workers']:>4}"
            for lane in LANES
        )
        lines.append(f"{s['t']:>6} {cells}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=float, default=3.0, help="seconds between samples")
    parser.add_argument("--flows", type=int, default=40, help="onboarding flows in the wave")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="idv-autoscale-") as tmp:
        result = run(args.every, args.flows, Path(tmp))
    print(table(result))
    peak = {lane: max(s[lane]["workers"] for s in result["samples"]) for lane in LANES}
    useful = {lane: result["samples"][-1][lane]["useful"] for lane in LANES}
    summary = {
        "bench": "autoscale",
        "samples": len(result["samples"]),
        "peak_desired_workers": peak,
        "useful_processes_at_end": useful,
        "desired_over_time": {
            lane: [s[lane]["workers"] for s in result["samples"]] for lane in LANES
        },
        "bulk_seconds_per_row": result["samples"][-1]["bulk"]["seconds_per_item"],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
