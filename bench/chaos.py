"""The chaos run: batch rows and onboarding flows through real workers while things break.

The stack on loopback (Redis with AOF, moto's S3 behind a proxy that can refuse connections,
the emulator, the receiver, two worker nodes, beat). While a batch of ``--rows`` DocOcrV2 rows
and ``--flows`` onboarding flows run, on a schedule:

* a worker node or one of its pool processes is SIGKILLed every 10–20 s (and the node started
  again, as its supervisor would);
* the provider answers 5xx, drops connections, truncates and sends non-JSON replies;
* the DocOcrV2 quota is cut to 60% for 20 s; replies slower than the read timeout for 5 s;
* evidence downloads are slowed and broken; the S3 API refuses connections for 20 s;
* Redis (AOF ``everysec``) is restarted once, gracefully or by a crash (``--redis crash``).

Then, once everything settled, it prints one JSON object: ``items_lost`` (rows in no final
status), ``flows_lost`` (transactions in no final ledger state), ``duplicate_billed_calls``
(DocOcrV2 calls the emulator served more than once for one item), ``evidence_lost``,
``uncertain``, ``dead_letters`` (by kind and code), ``worker_restarts_needed`` (nodes that died
on their own), ``wall_over_ideal`` (the batch's wall time ÷ rows at the quota),
``wall_over_budget`` (wall time ÷ the ideal plus the capacity the faults themselves remove: the
quota cut, the S3 outage window, the stalled replies) and ``takeover_p50_s``/``takeover_p99_s``
(from a kill to the dead holder's lease taken by another worker, ``bench/takeover.py``).
Exits 1 when anything was lost or billed twice.

Usage: ``python bench/chaos.py [--quick] [--redis graceful|crash] [--log-level INFO]``
(takeovers slower than 10 s are printed as they are seen).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import socket
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

from bench.takeover import LeaseWatch
from worker.batch import TERMINAL, merchant_biz_id
from worker.devtools import DevStack, Proc, RedisServer, free_port, spawn_s3, wait_until
from worker.emulator.samples import generate_samples
from worker.flows import batches
from worker.keys import RedisKeys
from worker.ledger import FINAL_STATES, Ledger
from worker.settings import load_settings
from worker.stores import DeadLetterStore
from worker.wiring import Cli

TOKEN = "chaos-token"
BUCKET = "idv-chaos"
BATCH_PRODUCT = "ID_OCR_MIN"


class FlakyProxy:
    """A TCP proxy to ``target`` that can refuse connections (``down``) and cut open ones."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target = target_port
        self._down = threading.Event()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._start_listener()

    def _start_listener(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()
            with self._lock:
                self._open.discard(src)
                self._open.discard(dst)

    def down(self) -> None:
        """Refuse new connections and cut the open ones."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            for s in list(self._open):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def up(self) -> None:
        if self._listener is None:
            self._start_listener()


class Chaos:
    def __init__(self, args: argparse.Namespace, stack: DevStack, redis_server: RedisServer,
                 s3: FlakyProxy) -> None:  # fmt: skip
        self.args = args
        self.stack = stack
        self.redis_server = redis_server
        self.s3 = s3
        self.env = stack.env(
            IDV_S3_ENDPOINT_URL=f"http://127.0.0.1:{s3.port}",
            IDV_S3_BUCKET=BUCKET,
            IDV_CALLBACK_TOKENS=TOKEN,
            IDV_LOG_LEVEL=args.log_level,
            IDV_QUOTAS=f"{BATCH_PRODUCT}={args.quota},eKYC=50",
            IDV_READ_TIMEOUT="2",
            IDV_RECONCILE_AFTER_S="10",
            IDV_RECONCILE_EVERY_S="2",
            IDV_ARCHIVE_EVERY_S="5",
            IDV_LIMITER_MAX_WAIT_S="20",
            IDV_BATCH_WATCHDOG_INTERVAL_S="5",
        )
        self.settings = load_settings(**{k[4:].lower(): v for k, v in self.env.items()})
        self.control = httpx.Client(base_url=f"{stack.emulator_url}/_emulator", timeout=60)
        self.nodes: dict[str, Proc] = {}
        self.killed_by_us: set[int] = set()
        self.restarts_needed = 0
        self.events: list[str] = []
        self.stop = threading.Event()
        self.watch: LeaseWatch | None = None

    def emulator(self, method: str, path: str, payload: Any = None) -> Any:
        for _ in range(5):
            try:
                response = self.control.request(method, path, json=payload)
                response.raise_for_status()
                return response.json()
            except httpx.TransportError:
                time.sleep(0.5)
        raise RuntimeError(f"emulator {method} {path} failed")

    def log(self, what: str) -> None:
        self.events.append(f"{time.strftime('%H:%M:%S')} {what}")
        print(f"# {what}", flush=True)

    # ---------------------------------------------------------------- processes

    def start_node(self, name: str) -> None:
        self.nodes[name] = self.stack.start_worker(self.env, concurrency=3, name=name)

    def supervise(self) -> None:
        """Restart nodes that died: killed by us (expected) or on their own (counted)."""
        while not self.stop.wait(1.0):
            for name, proc in list(self.nodes.items()):
                if proc.alive():
                    continue
                if proc.pid not in self.killed_by_us:
                    self.restarts_needed += 1
                    self.log(f"node {name} exited on its own: restarted")
                self.start_node(name)

    def killer(self, rng: random.Random) -> None:
        # Kills go on while the faults do (then the run must settle on its own).
        until = time.monotonic() + 120 * self.args.pace
        while not self.stop.wait(rng.uniform(10, 20)) and time.monotonic() < until:
            name = rng.choice(sorted(self.nodes))
            proc = self.nodes[name]
            if not proc.alive():
                continue
            children = proc.children()
            if children and rng.random() < 0.5:
                victim = rng.choice(children)
                self.log(f"SIGKILL a pool process of {name}")
                if self.watch is not None:
                    self.watch.killed()
                with contextlib.suppress(psutil.Error):
                    psutil.Process(victim).send_signal(signal.SIGKILL)
            else:
                self.log(f"SIGKILL node {name}")
                self.killed_by_us.add(proc.pid)
                if self.watch is not None:
                    self.watch.killed()
                proc.kill()

    def faults(self) -> None:
        """The fault schedule (seconds from the start)."""
        steps: list[tuple[float, str]] = [
            (5, "provider_errors_on"), (25, "quota_cut"), (45, "quota_back"),
            (50, "slow_replies"), (55, "fast_replies"), (60, "broken_downloads"),
            (70, "s3_down"), (90, "s3_up"), (100, "redis_restart"), (110, "provider_errors_off"),
        ]  # fmt: skip
        began = time.monotonic()
        for at, step in steps:
            if self.stop.wait(max(0.0, began + at * self.args.pace - time.monotonic())):
                return
            self.log(step)
            getattr(self, f"_{step}")()

    def _provider_errors_on(self) -> None:
        self.emulator("PUT", "faults", {"error_503_rate": 0.05, "error_500_rate": 0.03,
                                        "drop_rate": 0.02, "truncate_rate": 0.02,
                                        "non_json_rate": 0.02})  # fmt: skip

    def _provider_errors_off(self) -> None:
        self.emulator("PUT", "faults", {"error_503_rate": 0, "error_500_rate": 0, "drop_rate": 0,
                                        "truncate_rate": 0, "non_json_rate": 0,
                                        "latency_ms": 0})  # fmt: skip

    def _quota_cut(self) -> None:
        self.emulator("PUT", "quotas", {BATCH_PRODUCT: self.args.quota * 0.6})

    def _quota_back(self) -> None:
        self.emulator("PUT", "quotas", {BATCH_PRODUCT: self.args.quota})

    def _slow_replies(self) -> None:
        self.emulator("PUT", "faults", {"latency_ms": 2500})

    def _fast_replies(self) -> None:
        self.emulator("PUT", "faults", {"latency_ms": 0})

    def _broken_downloads(self) -> None:
        self.emulator("PUT", "faults", {"break_downloads": 5, "download_bytes_per_s": 2_000_000})

    def _s3_down(self) -> None:
        self.s3.down()

    def _s3_up(self) -> None:
        self.s3.up()

    def _redis_restart(self) -> None:
        if self.args.redis == "crash":
            self.redis_server.crash()
        else:
            self.redis_server.shutdown()
        time.sleep(2)
        self.redis_server.start()

    # ---------------------------------------------------------------- load

    def manifest(self, workdir: Path) -> Path:
        rows = generate_samples(workdir / "images", 60, seed=11)
        images = [(r.image, r.doc_type) for r in rows if r.card_side is None and r.expect == "ok"]
        path = workdir / "rows.jsonl"
        with path.open("w", encoding="utf-8") as out:
            for n in range(self.args.rows):
                image, doc_type = images[n % len(images)]
                out.write(json.dumps({"image": image, "doc_type": doc_type, "item_id": f"r{n}"}))
                out.write("\n")
        return path

    def flows(self, ledger: Ledger, count: int) -> list[str]:
        tids = []
        for n in range(count):
            if self.stop.is_set():
                break
            biz = f"chaos{n:04d}"
            tid = str(self.emulator("POST", "transactions", {
                "product_code": "eKYC", "merchant_biz_id": biz, "merchant_user_id": "u",
                "callback_url": f"{self.stack.receiver_url}/callback?productCode=eKYC",
                "callback_token": TOKEN})["transaction_id"])  # fmt: skip
            for _ in range(60):
                try:
                    ledger.record_start(tid, "eKYC", biz)
                    break
                except redis.RedisError:
                    time.sleep(0.5)
            self.emulator("POST", f"transactions/{tid}/complete",
                          {"passed": "Y", "video_size": 300_000 + n})  # fmt: skip
            tids.append(tid)
            time.sleep(self.args.pace * 90 / count)
        return tids


def _retrying(fn: Any, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a reduced run (~2 minutes)")
    parser.add_argument("--redis", choices=("graceful", "crash"), default="crash")
    parser.add_argument("--quota", type=float, default=10.0)
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--flows", type=int, default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log-level", default="WARNING", help="IDV_LOG_LEVEL of the processes")
    parser.add_argument(
        "--pace", type=float, default=None,
        help="the fault schedule's time scale (default 0.6 with --quick, else 1.0)",
    )  # fmt: skip
    args = parser.parse_args()
    args.rows = args.rows or (400 if args.quick else 2040)
    args.flows = args.flows or (30 if args.quick else 100)
    args.pace = args.pace or (0.6 if args.quick else 1.0)
    rng = random.Random(args.seed)
    with DevStack() as stack:
        redis_server = RedisServer(stack.workdir / "redis", log=stack.workdir / "redis.log").start()
        stack.redis_url = redis_server.url
        s3_port = free_port()
        stack.procs.append(spawn_s3(s3_port, stack.workdir / "s3.log"))
        stack.s3_endpoint = f"http://127.0.0.1:{s3_port}"
        proxy = FlakyProxy(s3_port)
        stack.start_emulator(quotas={BATCH_PRODUCT: args.quota, "eKYC": 50})
        chaos = Chaos(args, stack, redis_server, proxy)
        from worker.storage import S3ObjectStore

        S3ObjectStore(chaos.settings.storage).ensure_bucket()
        stack.start_receiver(chaos.env)
        for name in ("n1", "n2"):
            chaos.start_node(name)
        beat = Proc("beat", [sys.executable, "-m", "celery", "-A", "worker.app", "beat", "-s",
                             str(stack.workdir / "beat-schedule")], chaos.env,
                    stack.workdir / "beat.log").start()  # fmt: skip
        stack.procs.append(beat)
        client = redis.Redis.from_url(redis_server.url)
        ledger = Cli(chaos.settings, redis=client).ledger
        time.sleep(3)
        manifest = chaos.manifest(stack.workdir)
        began = time.monotonic()
        with batches(chaos.settings) as api:
            batch_id = api.submit(manifest).batch_id
        ns = chaos.settings.redis.namespace
        chaos.watch = LeaseWatch(
            redis.Redis.from_url(redis_server.url), f"{ns}{{batch:{batch_id}}}:cl",
            f"{ns}lease:onboarding:",
            lease_s=max(chaos.settings.batch.batch_lease_s,
                        chaos.settings.onboarding.onboarding_lease_s),
        ).start()  # fmt: skip
        threads = [threading.Thread(target=chaos.supervise, daemon=True),
                   threading.Thread(target=chaos.killer, args=(rng,), daemon=True),
                   threading.Thread(target=chaos.faults, daemon=True)]  # fmt: skip
        for thread in threads:
            thread.start()
        tids = chaos.flows(ledger, args.flows)

        def settled() -> bool:
            with batches(chaos.settings) as api:
                progress = api.status(batch_id)
            open_flows = sum(
                1 for t in tids if (e := ledger.get(t)) is None or e.state not in FINAL_STATES
            )
            return progress.processed >= progress.total and open_flows == 0

        timeout = 900 if not args.quick else 420
        try:
            wait_until(lambda: _retrying(settled), timeout=timeout, interval=2.0)
            settled_ok = True
        except TimeoutError:
            settled_ok = False
        wall = time.monotonic() - began
        chaos.stop.set()
        chaos.emulator("PUT", "faults", {"error_503_rate": 0, "error_500_rate": 0, "drop_rate": 0,
                                         "truncate_rate": 0, "non_json_rate": 0,
                                         "latency_ms": 0})  # fmt: skip
        with batches(chaos.settings) as api:
            progress = api.status(batch_id)
        counts = {status.name.lower(): n for status, n in progress.counts.items()}
        items_lost = progress.total - sum(progress.counts.get(s, 0) for s in TERMINAL)
        flows_lost = [
            t for t in tids if (e := ledger.get(t)) is None or e.state not in FINAL_STATES
        ]
        evidence_lost = 0
        for tid in tids:
            raw = client.get(f"{chaos.settings.redis.namespace}result:tx:{tid}")
            if raw and json.loads(raw).get("status") == "evidence_lost":
                evidence_lost += 1
        duplicates = 0
        for n in range(args.rows):
            calls = chaos.emulator("GET", f"calls/DocOcrV2/{merchant_biz_id(batch_id, f'r{n}')}")
            duplicates += max(0, int(calls.get("success", 0)) - 1)
        letters = DeadLetterStore(client, RedisKeys(chaos.settings.redis.namespace)).list(
            limit=10_000
        )
        dead = Counter(f"{d.kind}:{d.code}" for d in letters)
        ideal = args.rows / args.quota
        chaos.watch.stop()
        # The capacity the faults themselves remove: 40% of the quota for the cut's 20 s, the
        # S3 outage's 20 s, and the 5 s of replies slower than the read timeout (all × pace).
        budget = ideal + args.pace * (0.4 * 20 + 20 + 5)
        figures = {
            "quick": args.quick,
            "redis_restart": args.redis,
            "rows": args.rows,
            "flows": args.flows,
            "settled": settled_ok,
            "items_lost": items_lost,
            "flows_lost": len(flows_lost),
            "duplicate_billed_calls": duplicates,
            "evidence_lost": evidence_lost,
            "uncertain": counts.get("uncertain", 0),
            "item_counts": counts,
            "dead_letters": dict(dead),
            "worker_restarts_needed": chaos.restarts_needed,
            "wall_s": round(wall, 1),
            "ideal_s": round(ideal, 1),
            "wall_over_ideal": round(wall / ideal, 2),
            "budget_s": round(budget, 1),
            "wall_over_budget": round(wall / budget, 2),
            **chaos.watch.figures(),
            "events": len(chaos.events),
        }
        client.close()
        redis_server.stop()
        proxy.down()
    print(json.dumps(figures))
    bad = items_lost or flows_lost or duplicates or not settled_ok
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
