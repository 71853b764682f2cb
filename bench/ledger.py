"""The ledger, the reconciler and the archival sweep, measured on the real stack.

Redis, moto's S3 server, the emulator, the receiver, Celery workers (a realtime and an archival
pool) and a beat, on loopback; the bench drives the emulator and reads the ledger.

1. ``reconcile_p50_s`` / ``reconcile_p99_s``: flows started through the ledger whose callback
   never comes (completed at a random moment within 3 × ``IDV_RECONCILE_AFTER_S`` of their
   start): completion -> evidence stored. Goal p99 ≤ 2 × ``IDV_RECONCILE_AFTER_S``.
   ``poll_calls_per_flow``: CheckResult calls spent per such flow (goal ≤ 3 on average).
2. ``archival_quota_utilisation``: a backlog of completed transactions waiting for archival
   while realtime flows arrive at ``--realtime-rate``/s on the same CheckResult bucket (quota
   ``--quota``): archival calls ÷ the quota left over by the realtime calls, over the middle of
   the run (goal ≥ 0.95); ``realtime_wait_p99_slots``: the realtime lane's limiter wait p99 in
   slots of 1/quota during it (goal ≤ 1; from the limiter's histogram, so an upper bound).
3. ``sweep_ms_per_due`` with ``--ledger-size`` transactions in the ledger next to the same
   sweep on an empty one (``sweep_ratio_full_vs_empty``: a sweep must not slow down with the
   ledger's size); ``ledger_bytes_per_tx`` from Redis ``used_memory``.
4. ``lost``: transactions of parts 1 and 2 in no final state at the end (goal 0).

Usage: ``python bench/ledger.py [--quick]``; the last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.devtools import DevStack, Proc, wait_until
from worker.jobs import Notice, OnboardingJob
from worker.ledger import FINAL_STATES, Claim, Reconciler, State
from worker.settings import Settings, load_settings
from worker.wiring import Cli

TOKEN = "bench-ledger-token"
BUCKET = "idv-bench-ledger"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


class NullDispatcher:
    """Part 3 measures the sweep itself, not Celery (a ``WorkSender`` that sends nothing)."""

    def onboard(self, job: OnboardingJob, **options: Any) -> None:
        return None

    def archive(self, job: OnboardingJob) -> None:
        return None

    def archival_backlog(self) -> int:
        return 0

    def notify(self, notice: Notice) -> None:
        return None


class Bench:
    def __init__(self, stack: DevStack, args: argparse.Namespace) -> None:
        self.stack = stack
        self.args = args
        self.env = stack.env(
            IDV_S3_BUCKET=BUCKET,
            IDV_CALLBACK_TOKENS=TOKEN,
            IDV_LOG_LEVEL="WARNING",
            IDV_QUOTAS=f"ID_OCR={args.quota},eKYC=200",
            IDV_RECONCILE_AFTER_S=str(args.reconcile_after),
            IDV_RECONCILE_EVERY_S="1",
            IDV_ARCHIVE_EVERY_S="1",
            IDV_ARCHIVE_BATCH="100",
            IDV_ONBOARDING_LEASE_S="10",
        )
        settings_env = {k[4:].lower(): v for k, v in self.env.items()}
        self.settings: Settings = load_settings(**settings_env)
        self.redis = redis.Redis.from_url(stack.redis_url)
        self.ledger = Cli(self.settings, redis=self.redis).ledger
        self.control = httpx.Client(base_url=f"{stack.emulator_url}/_emulator", timeout=60)
        from worker.storage import S3ObjectStore

        S3ObjectStore(self.settings.storage).ensure_bucket()

    def emulator(self, method: str, path: str, payload: Any = None) -> Any:
        response = self.control.request(method, path, json=payload)
        response.raise_for_status()
        return response.json()

    def new_flow(self, product: str, biz: str, *, callback: bool) -> str:
        payload: dict[str, Any] = {"product_code": product, "merchant_biz_id": biz,
                                   "merchant_user_id": "u"}  # fmt: skip
        if callback:
            payload["callback_url"] = f"{self.stack.receiver_url}/callback?productCode={product}"
            payload["callback_token"] = TOKEN
        return str(self.emulator("POST", "transactions", payload)["transaction_id"])

    def complete(self, tid: str, *, callback: bool, video: int | None = None) -> None:
        payload: dict[str, Any] = {"passed": "Y", "callback": callback}
        if video is not None:
            payload["video_size"] = video
        self.emulator("POST", f"transactions/{tid}/complete", payload)

    def check_result_calls(self, tid: str) -> int:
        counts = self.emulator("GET", f"calls/CheckResult/{tid}")
        return sum(int(part.get("calls", 0)) for part in counts.values())

    def served(self, product: str) -> float:
        stats = self.emulator("GET", "stats")
        return float(stats["actions"].get("CheckResult", {}).get(product, {}).get("served", 0))

    def open_of(self, tids: list[str]) -> int:
        out = 0
        for tid in tids:
            entry = self.ledger.get(tid)
            if entry is None or entry.state not in FINAL_STATES:
                out += 1
        return out

    # ---------------------------------------------------------------- 1. dropped callbacks

    def reconcile(self, flows: int) -> tuple[dict[str, Any], list[str]]:
        after = self.args.reconcile_after
        rng = random.Random(3)
        started = []
        for n in range(flows):
            tid = self.new_flow("eKYC", f"rec{n:05d}", callback=False)
            self.ledger.record_start(tid, "eKYC", f"rec{n:05d}")
            started.append((time.time(), tid))
        plan = sorted((t0 + rng.uniform(0, 3 * after), tid) for t0, tid in started)
        completed: dict[str, float] = {}
        for at, tid in plan:
            delay = at - time.time()
            if delay > 0:
                time.sleep(delay)
            self.complete(tid, callback=False, video=256 * 1024)
            completed[tid] = time.time()
        tids = list(completed)
        wait_until(lambda: self.open_of(tids) == 0, timeout=120 + 4 * after, interval=0.5)
        latencies, calls = [], []
        for tid, done_at in completed.items():
            entry = self.ledger.get(tid)
            assert entry is not None
            stored = entry.history.get(State.EVIDENCE_STORED) or entry.history.get(State.ARCHIVED)
            if stored is not None:
                latencies.append(stored - done_at)
            calls.append(self.check_result_calls(tid))
        return {
            "reconcile_after_s": after,
            "reconciled_flows": flows,
            "reconcile_p50_s": round(percentile(latencies, 50), 2),
            "reconcile_p99_s": round(percentile(latencies, 99), 2),
            "reconcile_goal_s": 2 * after,
            "poll_calls_per_flow": round(statistics.mean(calls), 2),
        }, tids

    # ---------------------------------------------------------------- 2. archival under load

    def archival(self, backlog: int) -> tuple[dict[str, Any], list[str]]:
        quota = self.args.quota
        old = time.time() - 7200
        archival = []
        for n in range(backlog):
            tid = self.new_flow("ID_OCR", f"arc{n:05d}", callback=False)
            self.complete(tid, callback=False)
            archival.append(tid)
        realtime: list[str] = []
        waits_before = self.wait_histogram()
        for n, tid in enumerate(archival):
            self.ledger.record_completed(tid, "ID_OCR", f"arc{n:05d}", old)
        began = time.time()
        samples: list[tuple[float, float, int]] = []
        n = 0
        while self.open_of_sample(archival) and time.time() - began < 600:
            tid = self.new_flow("ID_OCR", f"rt{n:05d}", callback=True)
            self.ledger.record_start(tid, "ID_OCR", f"rt{n:05d}")
            self.complete(tid, callback=True)
            realtime.append(tid)
            n += 1
            samples.append((time.time(), self.served("ID_OCR"), len(realtime)))
            time.sleep(max(0.0, 1 / self.args.realtime_rate - 0.02))
        waits_after = self.wait_histogram()
        wait_until(lambda: self.open_of(realtime) == 0, timeout=120, interval=0.5)
        # The middle of the run: workers warm, the backlog not yet drained.
        lo, hi = samples[len(samples) // 5], samples[(4 * len(samples)) // 5]
        seconds = hi[0] - lo[0]
        total = hi[1] - lo[1]
        rt_calls = sum(self.check_result_calls(t) for t in realtime[lo[2] : hi[2]])
        left_over = quota * seconds - rt_calls
        p99_wait = self.histogram_p99(waits_before, waits_after)
        return {
            "quota_qps": quota,
            "archival_backlog": backlog,
            "realtime_rate_per_s": self.args.realtime_rate,
            "window_s": round(seconds, 1),
            "archival_calls_in_window": int(total - rt_calls),
            "realtime_calls_in_window": rt_calls,
            "archival_quota_utilisation": round((total - rt_calls) / left_over, 3),
            "realtime_wait_p99_s": p99_wait,
            "realtime_wait_p99_slots": round(p99_wait * quota, 2),
        }, archival + realtime

    def open_of_sample(self, tids: list[str]) -> bool:
        counts = self.ledger.counts()
        return sum(n for s, n in counts.items() if s not in FINAL_STATES) > 0 and bool(tids)

    def wait_histogram(self) -> dict[float, float]:
        raw = self.redis.hgetall(f"{self.settings.redis.namespace}metrics:counters")
        out: dict[float, float] = {}
        for key, value in raw.items():
            name = key.decode()
            if (name.startswith("idv_limiter_wait_seconds_bucket") and 'lane="realtime"' in name
                    and "ID_OCR:CheckResult" in name):  # fmt: skip
                le = name.split('le="')[1].split('"')[0]
                out[float("inf") if le == "+Inf" else float(le)] = float(value)
        return out

    @staticmethod
    def histogram_p99(before: dict[float, float], after: dict[float, float]) -> float:
        deltas = {le: after.get(le, 0) - before.get(le, 0) for le in after}
        total = deltas.get(float("inf"), 0)
        if total <= 0:
            return 0.0
        for le in sorted(deltas):
            if deltas[le] >= 0.99 * total:
                return le
        return float("inf")

    # ---------------------------------------------------------------- 3. scale

    def scale(self, size: int, due: int) -> dict[str, Any]:
        client = redis.Redis.from_url(self.stack.redis_url.rsplit("/", 1)[0] + "/3")
        client.flushdb()
        settings = self.settings
        cli = Cli(settings, redis=client)
        ledger = cli.ledger
        sweeper = Reconciler(
            ledger,
            NullDispatcher(),
            settings.ledger,
            checkresult_qps=cli.core.quotas.quota_for(
                settings.onboarding.onboarding_product, "CheckResult"
            ),
        )

        def sweep_ms() -> float:
            now = time.time()
            for n in range(due):
                ledger.record_completed(f"due{n:07d}", "eKYC", "b", now)
            began = time.perf_counter()
            report = sweeper.reconcile(limit=due)
            elapsed = time.perf_counter() - began
            assert report.claimed == due, report
            for n in range(due):
                ledger.delete(f"due{n:07d}")
            return elapsed * 1000 / due

        empty = statistics.median(sweep_ms() for _ in range(3))
        before = int(client.info("memory")["used_memory"])
        # The raw script on a pipeline: filling a million entries one round trip each would
        # take minutes (the ledger's own call also waits for replicas when asked).
        script = client.register_script(ledger._scripts["upsert"].source)
        now = time.time()
        pipe = client.pipeline(transaction=False)
        for n in range(size):
            tid = f"hk{n:030x}"
            deletes = now + settings.ledger.provider_retention_s
            script(keys=ledger._keys(tid), client=pipe,
                   args=[tid, now, "initialized", "eKYC", f"b{n:010d}", "started", now, "",
                         deletes, "rt", now + 3600, 40 * 86400 * 1000])  # fmt: skip
            if n % 2000 == 1999:
                pipe.execute()
        pipe.execute()
        after = int(client.info("memory")["used_memory"])
        full = statistics.median(sweep_ms() for _ in range(3))
        claimed = ledger.claim("hk" + "0" * 30, "rt", hold_until=now)
        assert not isinstance(claimed, Claim)  # not due: a sweep never touches it
        client.flushdb()
        client.close()
        return {
            "ledger_size": size,
            "due_per_sweep": due,
            "sweep_ms_per_due": round(full, 3),
            "sweep_ms_per_due_empty_ledger": round(empty, 3),
            "sweep_ratio_full_vs_empty": round(full / empty, 2),
            "ledger_bytes_per_tx": round((after - before) / size),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller run (< 90 s)")
    parser.add_argument("--quota", type=float, default=10.0)
    parser.add_argument("--realtime-rate", type=float, default=3.0)
    parser.add_argument("--reconcile-after", type=float, default=None)
    args = parser.parse_args()
    if args.reconcile_after is None:
        args.reconcile_after = 5.0 if args.quick else 10.0
    flows, backlog = (30, 200) if args.quick else (150, 1200)
    size = 100_000 if args.quick else 1_000_000
    with DevStack() as stack:
        stack.start_redis()
        stack.start_s3()
        stack.start_emulator(quotas={"ID_OCR": args.quota, "eKYC": 200})
        bench = Bench(stack, args)
        stack.start_receiver(bench.env)
        stack.start_worker(bench.env, queues=("idv.realtime", "idv.webhooks"), concurrency=3,
                           name="realtime")  # fmt: skip
        stack.start_worker(bench.env, queues=("idv.archival",), concurrency=6, name="archival")
        beat = Proc("beat", [sys.executable, "-m", "celery", "-A", "worker.app", "beat", "-s",
                             str(stack.workdir / "beat-schedule")], bench.env,
                    stack.workdir / "beat.log").start()  # fmt: skip
        stack.procs.append(beat)
        time.sleep(3)
        out: dict[str, Any] = {"quick": args.quick}
        part1, tids1 = bench.reconcile(flows)
        print(json.dumps(part1))
        part2, tids2 = bench.archival(backlog)
        print(json.dumps(part2))
        part3 = bench.scale(size, due=1000)
        print(json.dumps(part3))
        out |= part1 | part2 | part3
        out["lost"] = bench.open_of(tids1 + tids2)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
