"""``make demo``: the whole system end to end on this machine, against embedded defaults.

Starts a private Redis server, a local S3 API, the provider emulator, the callback receiver and
a Celery worker on free loopback ports, then runs each flow and prints what happened. Nothing
outside this machine is contacted; everything is stopped at the end.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import httpx

from worker.cloudauth import DEFAULT_QUOTAS
from worker.cloudauth.client import CloudAuthClient
from worker.cloudauth.errors import CloudAuthError, ThrottledError
from worker.devtools.devstack import DevStack
from worker.devtools.procs import wait_until
from worker.keys import RedisKeys
from worker.ratelimit import CallContext, Lane, QuotaTable, UnlimitedGate
from worker.redisio import connect, redis_target
from worker.settings import Settings, load_settings

CALLBACK_TOKEN = "demo-callback-token"  # noqa: S105 - the demo's own receiver token


class Demo:
    """Runs the demo stages against a ``DevStack``; each stage prints a short report."""

    def __init__(self, stack: DevStack, workdir: Path) -> None:
        self.stack = stack
        self.workdir = workdir
        self.results: dict[str, Any] = {}
        self.env: dict[str, str] = {}
        self.settings: Settings | None = None

    # ------------------------------------------------------------- helpers

    @staticmethod
    def say(text: str) -> None:
        print(text, flush=True)

    def stage(self, title: str, fn: Callable[[], dict[str, Any]]) -> None:
        self.say(f"\n== {title}")
        started = time.monotonic()
        report = fn()
        report["seconds"] = round(time.monotonic() - started, 2)
        self.results[title] = report
        for key, val in report.items():
            self.say(f"   {key}: {val}")

    def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        resp = httpx.request(method, f"{self.stack.emulator_url}/_emulator/{path}", json=body)
        resp.raise_for_status()
        return resp.json()

    def client(self, **overrides: Any) -> CloudAuthClient:
        assert self.settings is not None
        settings = self.settings.replace(**overrides) if overrides else self.settings
        return CloudAuthClient(settings.provider, gate=UnlimitedGate())

    # ------------------------------------------------------------- stages

    def start_stack(self) -> dict[str, Any]:
        redis_url = self.stack.start_redis()
        s3 = self.stack.start_s3()
        emulator = self.stack.start_emulator(quotas={"ID_OCR_MIN": 10, "eKYC": 10})
        self.env = self.stack.env(
            IDV_CALLBACK_TOKENS=CALLBACK_TOKEN, IDV_S3_BUCKET="idv-demo-evidence"
        )
        os.environ.update(self.env)
        self.settings = load_settings()
        return {"redis": redis_url, "s3_api": s3, "emulator": emulator}

    def provider_round_trip(self) -> dict[str, Any]:
        with self.client() as client:
            init = client.initialize(
                product_code="eKYC",
                merchant_biz_id="demo0001",
                merchant_user_id="demo-user-1",
                meta_info='{"deviceType":"web"}',
                doc_type="00000006",
            )
            tid = init.transaction_id or ""
            try:
                client.check_result(
                    transaction_id=tid, merchant_biz_id="demo0001", product_code="eKYC"
                )
                before = "unexpected success"
            except CloudAuthError as exc:
                before = f"{exc.code} (HTTP {exc.status})"
            done = self.control(
                "POST", f"transactions/{tid}/complete",
                {"passed": "Y", "sub_code": "200", "video_size": 1_000_000, "callback": False},
            )  # fmt: skip
            result = client.check_result(
                transaction_id=tid, merchant_biz_id="demo0001", product_code="eKYC"
            )
        face = result.ext_face_info
        return {
            "initialize": f"transaction {tid}",
            "check_result_before_completion": before,
            "completed": f"video of {done['video_size']} bytes, "
            f"sha256 {done['video_sha256'][:16]}…",
            "check_result_after": f"passed={result.passed} subCode={result.sub_code}",
            "evidence_link": "present (valid 15 min)" if face and face.doc_video_url else "none",
        }

    def doc_ocr_samples(self) -> dict[str, Any]:
        from worker.emulator import generate_samples

        rows = generate_samples(self.workdir / "samples", 6, seed=7)
        outcomes: list[str] = []
        with self.client() as client:
            for i, row in enumerate(rows):
                data = Path(row.image).read_bytes()
                try:
                    res = client.doc_ocr_v2(
                        merchant_biz_id=f"demoocr{i}",
                        merchant_user_id="demo-user",
                        doc_type=row.doc_type,
                        image_base64=base64.b64encode(data).decode(),
                        spoof=True,
                    )
                    fields = res.ext_id_info.ocr_id_info if res.ext_id_info else None
                    n = len(fields.model_dump(exclude_none=True)) if fields else 0
                    outcomes.append(f"{row.doc_type}: subCode {res.sub_code}, {n} OCR fields")
                except CloudAuthError as exc:
                    outcomes.append(f"{row.doc_type}: {exc.code}")
        return {"calls": len(rows), "outcomes": outcomes}

    def throttled_burst(self) -> dict[str, Any]:
        """30 back-to-back calls at a 10 QPS quota: without the limiter, then through it."""
        from worker.ratelimit import RedisRateLimiter, limiter_redis

        assert self.settings is not None
        self.control("POST", "reset", {"stats": True})
        tid = self.control(
            "POST", "transactions",
            {"product_code": "eKYC", "merchant_biz_id": "demoburst", "merchant_user_id": "u"},
        )["transaction_id"]  # fmt: skip
        self.control("POST", f"transactions/{tid}/complete", {"passed": "Y", "callback": False})

        def burst(client: CloudAuthClient) -> tuple[int, int, float]:
            ok = throttled = 0
            started = time.monotonic()
            for _ in range(30):
                try:
                    client.check_result(
                        transaction_id=tid, merchant_biz_id="demoburst", product_code="eKYC",
                        ctx=CallContext(lane=Lane.REALTIME),
                    )  # fmt: skip
                    ok += 1
                except ThrottledError:
                    throttled += 1
            return ok, throttled, time.monotonic() - started

        with CloudAuthClient(self.settings.provider, gate=UnlimitedGate(), max_attempts=1) as raw:
            ok1, thr1, secs1 = burst(raw)
        time.sleep(1.1)  # let the emulator's 1-second window empty between the two runs
        redis_client = limiter_redis(self.settings.redis)
        quotas = QuotaTable(self.settings.quotas, DEFAULT_QUOTAS)
        limiter = RedisRateLimiter(redis_client, quotas, namespace=self.settings.redis.namespace)
        with CloudAuthClient(self.settings.provider, gate=limiter, max_attempts=1) as limited:
            ok2, thr2, secs2 = burst(limited)
        redis_client.close()
        return {
            "without_limiter": f"{ok1} served, {thr1} throttled (Throttling.Api) in {secs1:.2f}s",
            "with_limiter": f"{ok2} served, {thr2} throttled in {secs2:.2f}s (quota 10/s)",
        }

    def onboarding(self) -> dict[str, Any]:
        """Callbacks from the emulator -> receiver -> workers -> evidence and results in S3."""
        from worker.storage import S3ObjectStore

        assert self.settings is not None
        store = S3ObjectStore(self.settings.storage)
        store.ensure_bucket()
        receiver = self.stack.start_receiver(self.env)
        self.stack.start_worker(self.env, concurrency=4, name="demo-worker")
        callback = f"{receiver}{self.settings.callbacks.callback_path}?productCode=eKYC"
        flows = self._complete_flows(callback)
        records = self._wait_for_records(flows)
        verified = 0
        for tid, rec in records.items():
            video = (rec.get("evidence") or {}).get("video") or {}
            head = store.head_verified(video["key"]) if video.get("key") else None
            if head is not None and head.sha256 == flows[tid]["video_sha256"]:
                verified += 1
        replays = self._replay_callback(callback, next(iter(flows)))
        store.close()
        latencies = sorted(f["latency"] for f in flows.values())
        return {
            "flows": len(flows),
            "records_in_redis": len(records),
            "videos_verified_sha256": f"{verified}/{len(flows)}",
            "statuses": sorted({rec["status"] for rec in records.values()}),
            "callback_to_evidence_s": f"max {latencies[-1]:.2f}",
            **replays,
        }

    def _complete_flows(self, callback: str) -> dict[str, dict[str, Any]]:
        """Five eKYC flows completed in the emulator, calling back ``callback``; by id."""
        flows: dict[str, dict[str, Any]] = {}
        sizes = [300_000, 2_000_000, 8_000_000, 20_000_000, 500_000]
        for i, size in enumerate(sizes):
            tid = self.control(
                "POST", "transactions",
                {"product_code": "eKYC", "merchant_biz_id": f"demoflow{i}",
                 "merchant_user_id": f"user{i}", "callback_url": callback,
                 "callback_token": CALLBACK_TOKEN, "doc_type": "00000006"},
            )["transaction_id"]  # fmt: skip
            flows[tid] = self.control(
                "POST", f"transactions/{tid}/complete",
                {"passed": "Y" if i != 2 else "N", "video_size": size},
            )  # fmt: skip
            flows[tid]["sent_at"] = time.monotonic()
        return flows

    def _wait_for_records(self, flows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The result record of every flow, once the workers stored them all."""

        from worker.keys import RedisKeys

        assert self.settings is not None
        keys = RedisKeys(self.settings.redis.namespace)
        r = connect(redis_target(self.settings.redis))
        records: dict[str, dict[str, Any]] = {}

        def all_done() -> bool:
            for tid in flows:
                if tid not in records:
                    raw = cast("bytes | None", r.get(keys.result_tx(tid)))
                    if raw:
                        records[tid] = json.loads(raw)
                        flows[tid]["latency"] = time.monotonic() - flows[tid]["sent_at"]
            return len(records) == len(flows)

        wait_until(all_done, timeout=120, interval=0.2)
        r.close()
        return records

    def _replay_callback(self, callback: str, tid: str) -> dict[str, str]:
        """Replay a callback (the provider may repeat one: nothing changes), then a wrong token."""
        before = self.control("GET", "stats")
        dup = httpx.get(
            callback,
            params={"transactionId": tid, "passed": "Y", "subCode": "200",
                    "callbackToken": CALLBACK_TOKEN},
        )  # fmt: skip
        time.sleep(1.0)
        after = self.control("GET", "stats")
        wrong = httpx.get(
            callback, params={"transactionId": tid, "passed": "Y", "subCode": "200",
                              "callbackToken": "not-the-token"},
        )  # fmt: skip
        return {
            "duplicate_callback": f"HTTP {dup.status_code}; provider calls before/after: "
            f"{_calls(before, 'CheckResult')}/{_calls(after, 'CheckResult')}",
            "wrong_token": f"HTTP {wrong.status_code}",
        }

    def batch(self) -> dict[str, Any]:
        """A manifest of generated ID images (a few bad) through the bulk lane, exactly once."""
        from worker.emulator import generate_samples
        from worker.flows import batches

        assert self.settings is not None
        out = self.workdir / "batch"
        generate_samples(out, 60, bad=4, seed=11)
        self.control("POST", "reset", {"stats": True})
        api = batches(self.settings)
        sub = api.submit(out / "manifest.csv")
        self.say(f"   submitted batch {sub.batch_id}: {sub.total_rows} rows")
        started = time.monotonic()
        last = ""
        while True:
            prog = api.status(sub.batch_id)
            line = " ".join(f"{k}={v}" for k, v in sorted(prog.counts.items()) if v)
            if line != last:
                self.say(f"   … {prog.state} {line}")
                last = line
            if str(prog.state) in {"completed", "BatchState.COMPLETED"}:
                break
            if time.monotonic() - started > 120:
                raise TimeoutError("batch did not finish in 120 s")
            time.sleep(0.5)
        served = _calls(self.control("GET", "stats"), "DocOcrV2")
        problems = list(api.problems(sub.batch_id))
        return {
            "rows": sub.total_rows,
            "doc_ocr_calls_billed": served,
            "problems_reported": [f"row {p.get('row')}: {p.get('reason')}" for p in problems][:6],
            "seconds_at_10_qps": round(time.monotonic() - started, 1),
        }

    def metrics_and_ledger(self) -> dict[str, Any]:
        """A Prometheus scrape of the run, parsed by prometheus_client's OpenMetrics parser,
        and the ledger's view of the onboarding flows."""
        from prometheus_client.openmetrics.parser import text_string_to_metric_families

        from worker.ledger import Ledger

        answer = httpx.get(
            self.stack.metrics_url,
            headers={"Accept": "application/openmetrics-text; version=1.0.0"},
            timeout=10,
        )
        answer.raise_for_status()
        parsed = text_string_to_metric_families(answer.text)  # type: ignore[no-untyped-call]
        families = {f.name: f for f in parsed}

        def total(name: str, **labels: str) -> float:
            family = families.get(name)
            return sum(
                float(sample.value)
                for sample in (family.samples if family else [])
                if sample.name.endswith("_total")
                and all(sample.labels.get(k) == v for k, v in labels.items())
            )

        assert self.settings is not None
        client = connect(redis_target(self.settings.redis))
        try:
            counts = Ledger(
                client,
                RedisKeys(self.settings.redis.namespace),
                self.settings.ledger,
                evidence_window_s=self.settings.onboarding.evidence_window_s,
            ).counts()
        finally:
            client.close()
        return {
            "openmetrics_families_parsed": len(families),
            "callbacks_accepted": total("idv_callbacks", outcome="accepted"),
            "onboarding_complete": total("idv_onboarding", outcome="complete"),
            "batch_items_done": total("idv_batch_items", outcome="done"),
            "ledger": {state.value: n for state, n in counts.items() if n},
        }


def _calls(stats: dict[str, Any], action: str) -> int:
    return sum(int(v.get("served", 0)) for v in stats.get("actions", {}).get(action, {}).values())


def main(argv: list[str] | None = None) -> int:
    """Run the stages; the work directory goes on success (unless ``--keep``), stays on failure."""
    parser = argparse.ArgumentParser(prog="demo", description=__doc__)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    passed = False
    # Its own work directory, so the stack leaves it: kept on failure and with --keep.
    with DevStack(Path(tempfile.mkdtemp(prefix="idv-stack-"))) as stack:
        demo = Demo(stack, stack.workdir)
        demo.say(f"idv-worker demo — work directory {stack.workdir}")
        try:
            demo.stage("1. local stack", demo.start_stack)
            demo.stage("2. provider round trip (Initialize, complete, CheckResult)",
                       demo.provider_round_trip)  # fmt: skip
            demo.stage("3. DocOcrV2 on generated ID images", demo.doc_ocr_samples)
            demo.stage("4. a burst against a 10 QPS quota", demo.throttled_burst)
            demo.stage("5. onboarding: callback -> CheckResult -> evidence in S3", demo.onboarding)
            demo.stage("6. bulk re-verification of a manifest (DocOcrV2)", demo.batch)
            demo.stage(
                "7. a Prometheus scrape (OpenMetrics) and the ledger", demo.metrics_and_ledger
            )
            passed = True
        except Exception as exc:
            demo.say(f"\ndemo failed: {type(exc).__name__}: {exc}")
        finally:
            if not passed:  # a failure or Ctrl-C: the logs are worth reading
                demo.say(f"work directory kept, with the log of every process: {stack.workdir}")
        if not passed:
            return 1
        report = stack.workdir / "demo-report.json"
        report.write_text(json.dumps(demo.results, indent=2))
        demo.say("\ndemo finished: every stage passed.")
        demo.say("(stopping the stack)")
    if args.keep:
        demo.say(f"work directory kept (--keep): {stack.workdir}, report {report}")
    else:
        shutil.rmtree(stack.workdir, ignore_errors=True)
        demo.say(f"work directory {stack.workdir} removed (--keep keeps it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
