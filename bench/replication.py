"""What waiting for a replica costs a ledger write (``IDV_REDIS_WAIT_REPLICAS``), on loopback.

A primary and a replica (``redis-server``, no AOF); one client writes ledger transitions
(``record_start`` then ``on_callback``, each one script) as fast as it can, first with
``IDV_REDIS_WAIT_REPLICAS=0`` then with 1 (each write followed by ``WAIT 1`` on its
connection). Prints one JSON object: writes per second and the per-write latency of each.

Usage: ``python bench/replication.py [--writes N] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.devtools import RedisServer, wait_until
from worker.keys import RedisKeys
from worker.ledger import Ledger
from worker.settings import load_settings
from worker.stores.replication import ReplicaWait


def measure(client: redis.Redis, wait: ReplicaWait, writes: int, tag: str) -> dict[str, float]:
    settings = load_settings()
    ledger = Ledger(
        client, RedisKeys("bench:"), settings.ledger, evidence_window_s=1800, replicas=wait
    )
    latencies = []
    started = time.perf_counter()
    for n in range(writes // 2):
        tid = f"tx-{tag}-{n}"
        for write in (ledger.record_start, ledger.on_callback):
            t0 = time.perf_counter()
            write(tid, "eKYC", f"m-{n}")
            latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "writes_per_s": round(len(latencies) / elapsed),
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--writes", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="2,000 writes")
    args = parser.parse_args()
    if args.quick:
        args.writes = 2_000
    with tempfile.TemporaryDirectory() as tmp:
        primary = RedisServer(Path(tmp) / "primary", persistent=False).start()
        replica = RedisServer(
            Path(tmp) / "replica", persistent=False, replica_of=primary.port
        ).start()
        client = redis.Redis.from_url(primary.url)
        try:
            wait_until(replica.in_sync, timeout=30, interval=0.05)
            measure(client, ReplicaWait(), 500, "warm")
            off = measure(client, ReplicaWait(0), args.writes, "off")
            on = measure(client, ReplicaWait(1, 500), args.writes, "on")
        finally:
            client.close()
            replica.stop()
            primary.stop()
    print(
        json.dumps(
            {
                "writes": args.writes,
                "wait_0": off,
                "wait_1": on,
                "throughput_ratio": round(on["writes_per_s"] / off["writes_per_s"], 2),
                "added_p50_ms": round(on["p50_ms"] - off["p50_ms"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
