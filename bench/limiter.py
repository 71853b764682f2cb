"""The global rate limiter against the emulator's quota, side by side with two baselines.

All traffic is real DocOcrV2 calls over HTTP to the emulator (``python -m worker.emulator``),
whose sliding 1-second window (``Throttling.Api``) and ``GET /_emulator/stats`` are the
ground truth. A private redis-server backs the limiters and Celery's broker.

1. Accuracy, Q in {10, 50}, 8 worker processes hammering one API (steady part of the run):
   ``<strategy>.q<Q>.rate_ratio`` (served per second / Q; goal >= 0.98), ``.throttled``
   (goal 0) and ``.max_in_window`` (most requests the emulator saw in any 1 s; <= Q), for
   ``ours`` (``RedisRateLimiter``), ``celery_rate_limit`` (a real ``celery worker -c 8``
   with ``rate_limit="Q/s"``) and ``limits_moving_window`` (the ``limits`` library's Redis
   moving window: hit, else sleep until the window frees, retry). ``<strategy>.rate_ratio``
   is the lowest over Q and ``<strategy>.throttled`` the sum. Every process first makes one
   call to another API, so no connection set-up lands between a grant and its request.
   Celery with the Redis broker releases rate-limited tasks about once per second after an
   initial burst (celery/celery#5927); the figures show what it does here, untuned.
1b. Quota algorithms (ours): the emulator's ``sliding``, ``fixed`` and ``token-bucket`` quotas,
   each with ``arrival_jitter_ms`` 0 and 20 (a network between grant and count), Q in
   {10, 50} (--quick: 50 only), calls retried when throttled (3 attempts), each case on a
   fresh bucket that learns its margin from ``IDV_QUOTA_SAFETY_MARGIN``:
   ``ours.<algorithm>.j<ms>.rate_ratio`` / ``.throttled`` / ``.throttled_share`` (throttled /
   calls) / ``.lost`` (calls that failed every attempt). ``ours.rate_ratio`` / ``.throttled``
   are over the jitter-0 cases (goals >= 0.99, <= 0.1% of calls, none lost),
   ``ours.rate_ratio_j20`` / ``.throttled_j20`` over the 20 ms ones (goal >= 0.97).
2. Deadlines (ours): 8 bulk processes saturate Q=10 while realtime calls arrive at random at
   10% of Q. ``deadline.realtime_wait_p50_slots`` / ``_p99_slots``: realtime acquire time as
   the caller sees it, in slot intervals (1 / (Q (1 - margin))), goal p99 <= 1;
   ``realtime_store_wait_p99_slots`` the same in Redis time (first ask to grant);
   ``deadline.bulk_utilisation``: bulk calls / (Q x seconds - realtime calls), goal >= 0.97.
3. Overhead: ``acquire_p50_ms`` / ``acquire_p99_ms`` of one acquire that does not wait
   (a quota no caller reaches), beside a Redis PING and a ``limits`` hit on the same server.

Usage: ``python bench/limiter.py [--quick] [--duration S] [--only-ours | --only-deadline]``
(default 60 s per case; --quick runs short cases and stays under ~90 s; --only-ours runs the
quota-algorithm matrix alone, --only-deadline part 2 alone). The last line printed is one JSON
object.
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from limiter_workers import AK, API, PRODUCT, SECRET, LimitsGate, Spec, realtime, saturate

from worker.cloudauth import DEFAULT_QUOTAS
from worker.devtools import Proc, RedisServer, free_port, spawn_emulator, wait_until
from worker.emulator.samples import generate_samples
from worker.ratelimit import (
    CallContext,
    Lane,
    QuotaAccount,
    QuotaTable,
    RedisRateLimiter,
    bucket_keys,
    read_account,
    read_status,
)
from worker.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
PROCESSES = 8
CTX = multiprocessing.get_context("fork")


class Emulator:
    """The emulator as a subprocess, and its control API."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = spawn_emulator(
            self.port, f"{AK}:{SECRET}", "--quota", f"{PRODUCT}=10", "--log-level", "warning",
            via_cli=False,
        )  # fmt: skip

    def control(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        reply = httpx.request(method, f"{self.url}/_emulator/{path}", json=payload, timeout=30)
        reply.raise_for_status()
        return reply.json()

    def reset(self, quota: float) -> None:
        self.control("PUT", "quotas", {PRODUCT: quota})
        self.control("POST", "reset", {})

    def configure(self, algorithm: str, jitter_ms: float) -> None:
        """The quota algorithm and the arrival jitter of the next cases (DocOcrV2 only)."""
        self.control("PUT", "quota-algorithm", {"algorithm": algorithm})
        self.control("PUT", "faults", {"arrival_jitter_ms": jitter_ms, "actions": [API]})

    def counts(self) -> dict[str, int]:
        actions = self.control("GET", "stats")["actions"]
        empty = {"served": 0, "throttled": 0, "errors": 0, "max_in_window": 0}
        return {**empty, **actions.get(API, {}).get(PRODUCT, {})}

    def stop(self) -> None:
        self.proc.stop(timeout=10)


def measure(
    emu: Emulator, quota: float, warmup: float, duration: float,
    account: Callable[[], QuotaAccount] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Served rate over the steady part; throttles and window maximum over the whole case.
    With ``account`` (our limiter's bucket), where the quota went over the steady part."""
    # Start-up (processes, a Celery worker) is not the steady state: wait for the first
    # call, then the warm-up, before counting.
    wait_until(lambda: emu.counts()["served"] > 0, timeout=120, interval=0.05)
    time.sleep(warmup)  # part of the measurement protocol, not synchronisation
    a0 = account() if account else None
    first, t0 = emu.counts(), time.time()
    time.sleep(duration)
    a1 = account() if account else None
    last, t1 = emu.counts(), time.time()
    served = last["served"] - first["served"]
    rate = served / (t1 - t0)
    out = {
        "rate_ratio": round(rate / quota, 4),
        "throttled": last["throttled"],
        "max_in_window": last["max_in_window"],
        "errors": last["errors"],
        "window": (t0, t1),
        "served_in_window": served,
    }
    if a0 is not None and a1 is not None:
        out["where"] = where_it_went(
            a1.minus(a0), quota, t1 - t0, served, last["throttled"] - first["throttled"]
        )
    return out


def where_it_went(
    spent: QuotaAccount, quota: float, seconds: float, served: int, throttled: int
) -> dict[str, float]:
    """The steady part's quota (1.0 = quota x seconds), by where it went: ``served``, and what
    was not: the limiter's ``margin``, its ``factor`` (throttles, slow start), slots no process
    claimed in time (``unclaimed``), grants the provider ``throttled``, and grants not served
    in the window (``unserved``: in flight at its edges, failed). ``residual`` is the rest
    (the schedule's position at the two edges)."""
    capacity = quota * seconds
    parts = {
        "served": served / capacity,
        "margin": spent.margin_s / seconds,
        "factor": spent.factor_s / seconds,
        "unclaimed": spent.unclaimed_s / seconds,
        "throttled": throttled / capacity,
        "unserved": (spent.grants - served - throttled) / capacity,
    }
    parts["residual"] = 1.0 - sum(parts.values())
    return {k: round(v, 5) for k, v in parts.items()}


def bucket_account(spec: Spec) -> Callable[[], QuotaAccount] | None:
    """Reads the accounting of the case's bucket (our limiter only)."""
    if spec.kind != "ours":
        return None
    client = redis.Redis.from_url(spec.redis_url)
    keys = bucket_keys(spec.namespace, PRODUCT, API)
    return lambda: read_account(client, keys)


def run_case(
    spec: Spec, emu: Emulator, targets: list[tuple[Callable[..., None], tuple[Any, ...]]],
    warmup: float, duration: float,
) -> tuple[dict[str, Any], list[Any]]:  # fmt: skip
    """Run ``targets`` as processes started together; returns the measurement and their reports.

    A target is ``(function, first args)``; the process gets ``start``, ``stop``, ``out`` after.
    """
    emu.reset(spec.quota)
    start, stop, out = CTX.Event(), CTX.Event(), CTX.Queue()
    procs = [CTX.Process(target=fn, args=(*args, start, stop, out)) for fn, args in targets]
    for proc in procs:
        proc.start()
    start.set()
    try:
        result = measure(emu, spec.quota, warmup, duration, bucket_account(spec))
    finally:
        stop.set()
        reports = [out.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join(timeout=30)
    return result, reports


def run_processes(spec: Spec, emu: Emulator, warmup: float, duration: float) -> dict[str, Any]:
    """8 saturating processes of one strategy."""
    bulk = [(saturate, (spec, "bulk"))] * PROCESSES
    result, reports = run_case(spec, emu, bulk, warmup, duration)
    result["calls"] = sum(r[1] for r in reports)
    result["lost"] = sum(r[2] for r in reports)
    result.pop("window")
    return result


ALGORITHMS = ("sliding", "fixed", "token-bucket")
JITTERS_MS = (0, 20)


def learned(redis_url: str, spec: Spec) -> dict[str, Any]:
    """What the case's bucket learned: margin, grant-to-send gap spread, widenings."""
    settings = load_settings(quotas={PRODUCT: spec.quota}, namespace=spec.namespace)
    [status] = read_status(
        redis.Redis.from_url(redis_url),
        QuotaTable(settings.quotas, DEFAULT_QUOTAS),
        settings.redis.namespace,
        product_code=PRODUCT,
        api=API,
    )
    gap_dev = None if status.gap_dev is None else round(status.gap_dev * 1000, 3)
    return {"margin": round(status.margin, 5), "gap_dev_ms": gap_dev, "widened": status.widened}


def run_matrix(
    emu: Emulator, redis_url: str, b64: str, doc_type: str, quotas: list[float], margin: float,
    warmup: float, duration: float, algorithms: tuple[str, ...] = ALGORITHMS,
) -> dict[str, Any]:  # fmt: skip
    """Ours against each quota algorithm, with and without arrival jitter."""
    out: dict[str, Any] = {}
    for algorithm in algorithms:
        for jitter in JITTERS_MS:
            emu.configure(algorithm, jitter)
            cases: dict[str, Any] = {}
            for q in quotas:
                ns = f"m-{algorithm}-{jitter}-{q:g}:"  # a fresh bucket per case
                spec = Spec("ours", emu.url, redis_url, q, ns, b64, doc_type, margin, attempts=3)
                case = run_processes(spec, emu, warmup, duration)
                case["throttled_share"] = round(case["throttled"] / max(1, case["calls"]), 5)
                case["learned"] = learned(redis_url, spec)
                cases[f"q{q:g}"] = case
                print(
                    f"ours {algorithm} jitter={jitter}ms Q={q:g}: rate_ratio={case['rate_ratio']}"
                    f" throttled={case['throttled']} ({case['throttled_share']:.3%} of"
                    f" {case['calls']} calls) lost={case['lost']} learned={case['learned']}"
                    f" where={case.get('where')}",
                    file=sys.stderr,
                    flush=True,
                )
            summary = summarise(cases)
            summary["lost"] = sum(c["lost"] for c in cases.values())
            summary["calls"] = sum(c["calls"] for c in cases.values())
            summary["throttled_share"] = round(summary["throttled"] / max(1, summary["calls"]), 5)
            out[f"{algorithm}.j{jitter}"] = summary
    emu.configure("sliding", 0)
    for jitter in JITTERS_MS:
        rows = [v for k, v in out.items() if k.endswith(f".j{jitter}")]
        suffix = "" if jitter == 0 else f"_j{jitter}"
        out[f"rate_ratio{suffix}"] = min(r["rate_ratio"] for r in rows)
        out[f"throttled{suffix}"] = sum(r["throttled"] for r in rows)
        out[f"throttled_share{suffix}"] = round(
            sum(r["throttled"] for r in rows) / max(1, sum(r["calls"] for r in rows)), 5
        )
        out[f"lost{suffix}"] = sum(r["lost"] for r in rows)
    return out


def run_celery(
    emu: Emulator, broker: str, image: Path, doc_type: str, quota: float, warmup: float,
    duration: float,
) -> dict[str, Any]:  # fmt: skip
    """A real ``celery worker -c 8`` whose task has ``rate_limit="Q/s"``; queue pre-filled."""
    emu.reset(quota)
    env = {**os.environ, "BENCH_BROKER": broker, "BENCH_RATE": f"{quota:g}",
           "BENCH_ENDPOINT": emu.url, "BENCH_IMAGE": str(image), "BENCH_DOC_TYPE": doc_type,
           "PYTHONPATH": os.pathsep.join([str(BENCH), str(ROOT)])}  # fmt: skip
    os.environ.update({k: env[k] for k in ("BENCH_BROKER", "BENCH_RATE")})
    import limiter_celery

    limiter_celery.app.conf.broker_url = broker
    backlog = int(quota * (warmup + duration + 20) * 1.2)  # more than it can take meanwhile
    with limiter_celery.app.producer_or_acquire() as producer:
        for n in range(backlog):
            limiter_celery.app.send_task("bench.ocr", args=(n,), producer=producer)
    worker = Proc(
        "celery",
        [sys.executable, "-m", "celery", "-A", "limiter_celery", "worker", "-c", str(PROCESSES),
         "-P", "prefork", "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
         "--without-heartbeat"],
        env,
        cwd=BENCH,
    ).start()  # fmt: skip
    try:
        result = measure(emu, quota, warmup, duration)
    finally:
        worker.stop(timeout=30)
        redis.Redis.from_url(broker).flushdb()
    result.pop("window")
    return result


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_deadline(spec: Spec, emu: Emulator, warmup: float, duration: float) -> dict[str, Any]:
    """Bulk saturating the quota while realtime calls arrive at 10% of it."""
    targets = [(saturate, (spec, "bulk"))] * PROCESSES
    targets.append((realtime, (spec, 0.1 * spec.quota, 1)))
    result, reports = run_case(spec, emu, targets, warmup, duration)
    [(_, waits, store_waits, _)] = [r for r in reports if r[0] == "realtime"]
    t0, t1 = result["window"]
    slot = 1 / (spec.quota * (1 - spec.margin))
    wall = [w for end, w in waits]
    rt_in_window = sum(1 for end, _ in waits if t0 <= end < t1)
    bulk = result["served_in_window"] - rt_in_window
    return {
        "quota": spec.quota,
        "realtime_calls": len(wall),
        "realtime_wait_p50_slots": round(percentile(wall, 0.5) / slot, 3),
        "realtime_wait_p99_slots": round(percentile(wall, 0.99) / slot, 3),
        "realtime_wait_max_slots": round(max(wall, default=float("nan")) / slot, 3),
        "realtime_store_wait_p99_slots": round(percentile(store_waits, 0.99) / slot, 3),
        "bulk_utilisation": round(bulk / (spec.quota * (t1 - t0) - rt_in_window), 4),
        "throttled": result["throttled"],
    }


def timed(fn: Any, n: int) -> tuple[float, float]:
    samples = []
    for _ in range(n):
        began = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - began) * 1000)
    return round(percentile(samples, 0.5), 4), round(percentile(samples, 0.99), 4)


def run_overhead(redis_url: str, n: int) -> dict[str, Any]:
    """One acquire that never waits, beside a PING and a ``limits`` hit (same server)."""
    client = redis.Redis.from_url(redis_url)
    settings = load_settings(quotas={PRODUCT: 1e7}, redis_url=redis_url, namespace="overhead:")
    quotas = QuotaTable(settings.quotas, DEFAULT_QUOTAS)
    limiter = RedisRateLimiter(client, quotas, namespace=settings.redis.namespace)
    ctx = CallContext(Lane.REALTIME)
    gate = LimitsGate(redis_url, 1e7, "overhead-limits:")
    for _ in range(200):  # warm connections and script caches
        limiter.acquire(PRODUCT, API, ctx)
        gate.acquire(PRODUCT, API, ctx)
        client.ping()
    ping = timed(client.ping, n)
    ours = timed(lambda: limiter.acquire(PRODUCT, API, ctx), n)
    limits = timed(lambda: gate.acquire(PRODUCT, API, ctx), n)
    return {
        "acquire_p50_ms": ours[0],
        "acquire_p99_ms": ours[1],
        "ping_p50_ms": ping[0],
        "ping_p99_ms": ping[1],
        "limits_hit_p50_ms": limits[0],
        "limits_hit_p99_ms": limits[1],
        "acquire_vs_ping_p50": round(ours[0] / ping[0], 2),
        "acquire_vs_limits_p50": round(ours[0] / limits[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short cases (under a minute)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per case")
    parser.add_argument(
        "--margin", type=float, default=0.015, help="IDV_QUOTA_SAFETY_MARGIN of our limiter"
    )
    parser.add_argument("--only-ours", action="store_true", help="the quota-algorithm matrix only")
    parser.add_argument(
        "--only-deadline", action="store_true", help="the realtime-behind-bulk case only (2.)"
    )
    parser.add_argument(
        "--algorithms", default=",".join(ALGORITHMS), help="emulator quota algorithms to run"
    )
    args = parser.parse_args()
    duration = args.duration or (2.0 if args.quick else 60.0)
    warmup = 1.0 if args.quick else 3.0
    quotas = [10.0, 50.0]
    margin = args.margin
    out: dict[str, Any] = {"duration_s": duration, "processes": PROCESSES, "margin": margin}
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "redis").start()
        emu = Emulator()
        try:
            [row] = generate_samples(Path(tmp) / "samples", 1)
            image = Path(row.image)
            b64 = base64.b64encode(image.read_bytes()).decode()
            url = server.url
            if not args.only_deadline:
                out["ours"] = run_matrix(
                    emu, url, b64, row.doc_type, [50.0] if args.quick else quotas, margin,
                    warmup, duration, tuple(args.algorithms.split(",")),
                )  # fmt: skip
            else:
                spec = Spec("ours", emu.url, url, 10.0, "deadline:", b64, row.doc_type, margin)
                out["deadline"] = run_deadline(spec, emu, warmup, max(duration, 4.0))
                print("deadline", out["deadline"], file=sys.stderr, flush=True)
            if not args.only_ours and not args.only_deadline:
                cases = {}
                for q in quotas:
                    spec = Spec(
                        "limits", emu.url, url, q, f"limits{q:g}:", b64, row.doc_type, margin
                    )
                    cases[f"q{q:g}"] = run_processes(spec, emu, warmup, duration)
                    print("limits", f"Q={q:g}", cases[f"q{q:g}"], file=sys.stderr, flush=True)
                out["limits_moving_window"] = summarise(cases)
                cases = {}
                broker = f"redis://127.0.0.1:{server.port}/1"
                for q in quotas:
                    cases[f"q{q:g}"] = run_celery(
                        emu, broker, image, row.doc_type, q, warmup, duration
                    )
                    print("celery", f"Q={q:g}", cases[f"q{q:g}"], file=sys.stderr, flush=True)
                out["celery_rate_limit"] = summarise(cases)
                spec = Spec("ours", emu.url, url, 10.0, "deadline:", b64, row.doc_type, margin)
                out["deadline"] = run_deadline(spec, emu, warmup, max(duration, 4.0))
                print("deadline", out["deadline"], file=sys.stderr, flush=True)
                out["overhead"] = run_overhead(url, 1000 if args.quick else 5000)
                out["acquire_p99_ms"] = out["overhead"]["acquire_p99_ms"]
        finally:
            emu.stop()
            server.stop()
    print(json.dumps(out))


def summarise(cases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        **cases,
        "rate_ratio": min(c["rate_ratio"] for c in cases.values()),
        "throttled": sum(c["throttled"] for c in cases.values()),
    }


if __name__ == "__main__":
    main()
