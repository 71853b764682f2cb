"""End to end: emulator callbacks -> receiver (uvicorn) -> Redis -> Celery workers -> S3 + Redis.

One stack per module: the receiver and two Celery workers as subprocesses, on the session's
Redis, moto S3 server and emulator. The emulator completes flows and fires their callbacks at
the receiver; everything after that is the production path. Each test then checks the outcome
in Redis, S3 and the emulator's own counters, driving the bad paths with the emulator's clock
and fault controls.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil
import pytest

from tests.fixtures.e2e import E2EServers, E2EStack
from tests.fixtures.emulator import EmulatorHandle
from tests.fixtures.servers import free_port, wait_until
from tests.fixtures.webhooks import WebhookReceiver
from tests.fixtures.workers import CeleryWorker
from worker.devtools import spawn_receiver
from worker.keys import Evidence, ObjectKeys
from worker.wiring import Cli

pytestmark = pytest.mark.slow

MIB = 1024 * 1024
TOKENS = ("tok-e2e-primary", "tok-e2e-rotated")
EVIDENCE_NAMES = {"faceImg": "face", "idImage": "id_front", "idBackImage": "id_back"}


# ------------------------------------------------------------------ the stack


@dataclass
class Stack(E2EStack):
    receiver_url: str = ""
    workers: list[CeleryWorker] = field(default_factory=list)
    webhooks: WebhookReceiver = field(default_factory=WebhookReceiver)

    def results(self) -> dict[str, dict[str, Any]]:
        """The verified ``onboarding.result`` events, by transaction."""
        return {e["data"]["transaction_id"]: e for e in self.webhooks.events("onboarding.result")}

    @property
    def callback_url(self) -> str:
        return f"{self.receiver_url}/callback"

    def record(self, tid: str) -> dict[str, Any] | None:
        raw = self.redis.get(f"idv:result:tx:{tid}")
        return json.loads(raw) if raw else None

    def counter(self, series: str) -> float:
        return float(self.redis.hget("idv:metrics:counters", series) or 0)

    def deadletter(self, kind: str, tid: str) -> dict[str, str]:
        raw = self.redis.hgetall(f"idv:dlq:entry:{kind}:{tid}")
        return {k.decode(): v.decode() for k, v in raw.items()}

    def callback(self, tid: str, token: str = TOKENS[0], **extra: str) -> httpx.Response:
        params = {"transactionId": tid, "passed": "Y", "subCode": "200", "callbackToken": token}
        return httpx.get(self.callback_url, params={**params, **extra}, timeout=10)

    def sha256_of(self, key: str) -> str:
        body = self.store.client.get_object(Bucket=self.store.bucket, Key=key)["Body"]
        digest = hashlib.sha256()
        for chunk in iter(lambda: body.read(1 << 20), b""):
            digest.update(chunk)
        return digest.hexdigest()


@pytest.fixture(scope="module")
def stack(e2e_servers: E2EServers) -> Iterator[Stack]:
    webhooks = WebhookReceiver()
    webhook_url = webhooks.start()
    try:
        with e2e_servers.open(
            Stack,
            "onboarding-e2e",
            IDV_CALLBACK_TOKENS=",".join(TOKENS),
            IDV_QUOTAS="eKYC=2000,FACE_LIVENESS=2000,ID_OCR=2000",
            IDV_ONBOARDING_LEASE_S="6",
            IDV_EVIDENCE_PART_SIZE=str(5 * MIB),
            IDV_WEBHOOK_URL=webhook_url,
            IDV_WEBHOOK_SECRET=webhooks.secret,
        ) as opened:
            opened.webhooks = webhooks
            port = free_port()
            receiver = spawn_receiver(port, opened.env, opened.logdir / "receiver.log")
            opened.receiver_url = f"http://127.0.0.1:{port}"
            opened.workers = [opened.worker(f"e2e{i}", concurrency=3) for i in (1, 2)]
            try:
                for worker in opened.workers:
                    worker.wait_ready()
                yield opened
            finally:
                for worker in opened.workers:
                    worker.stop()
                receiver.stop(timeout=10)
    finally:
        webhooks.stop()


def check_result_calls(emulator: EmulatorHandle) -> int:
    by_product = emulator.stats()["actions"].get("CheckResult", {})
    return sum(s["served"] + s["errors"] for s in by_product.values())


def wait_for_record(stack: Stack, tid: str, timeout: float = 60) -> dict[str, Any]:
    try:
        wait_until(lambda: stack.record(tid) is not None, timeout=timeout, interval=0.1)
    except TimeoutError:
        raise AssertionError(f"no record for {tid}\n{stack.logs()}") from None
    record = stack.record(tid)
    assert record is not None
    return record


def assert_archived(stack: Stack, record: dict[str, Any], done: dict[str, Any]) -> None:
    """Every evidence object of ``done`` is in S3 with the emulator's SHA-256 (bytes, and the
    record's pointer; the metadata too unless the video was streamed in many parts)."""
    video = record["evidence"]["video"]
    if done["video_size"]:
        assert video["sha256"] == done["video_sha256"]
        head = stack.store.head(video["key"])
        assert head is not None
        assert head.sha256 in (None, done["video_sha256"])
        assert head.size == done["video_size"]
        assert head.encryption == "AES256"
        assert stack.sha256_of(video["key"]) == done["video_sha256"]
    for wire_name, sha in done["images"].items():
        pointer = record["evidence"][EVIDENCE_NAMES[wire_name]]
        assert pointer["sha256"] == sha
        assert stack.sha256_of(pointer["key"]) == sha


# ------------------------------------------------------------------ tests


def test_two_hundred_flows_end_to_end(stack: Stack, emulator: EmulatorHandle) -> None:
    rng = random.Random(4)
    sizes = [rng.randint(16 * 1024, 768 * 1024) for _ in range(181)]
    sizes += [rng.randint(2 * MIB, 6 * MIB) for _ in range(14)]
    sizes += [12 * MIB, 16 * MIB, 20 * MIB, 24 * MIB, 50 * MIB]
    rng.shuffle(sizes)
    products = ["eKYC", "FACE_LIVENESS"]
    stack.webhooks.fail_first = 3  # the first deliveries are retried with backoff

    flows: dict[str, dict[str, Any]] = {}
    for i, size in enumerate(sizes):
        tid = emulator.create_transaction(
            products[i % 2],
            callback_url=f"{stack.callback_url}?productCode={products[i % 2]}",
            callback_token=TOKENS[i % 2],
        )
        flows[tid] = emulator.complete(tid, passed="Y" if i % 7 else "N", video_size=size)
    assert sum(sizes) < 400 * MIB

    try:
        wait_until(
            lambda: len(list(stack.redis.scan_iter("idv:result:tx:*", count=1000))) >= 200,
            timeout=240,
            interval=0.5,
        )
    except TimeoutError:
        raise AssertionError(f"not all records written\n{stack.logs()}") from None

    stats = emulator.stats()
    assert stats["callbacks"]["delivered"] == 200
    assert stats["callbacks"]["failed"] == 0
    for tid, done in flows.items():
        record = stack.record(tid)
        assert record is not None, tid
        assert record["status"] == "complete"
        assert record["passed"] == emulator.transaction(tid)["passed"]
        assert_archived(stack, record, done)
    assert stack.redis.xlen("idv:results") == 200
    assert stack.counter('idv_callbacks_total{outcome="accepted"}') == 200

    # Every result reaches the webhook, signed, despite the endpoint failing at first.
    wait_until(lambda: len(stack.results()) == 200, timeout=60, interval=0.2)
    events = stack.results()
    assert set(events) == set(flows)
    assert stack.webhooks.failed == 3
    assert stack.webhooks.refused == []
    assert all(e["data"]["status"] == "complete" for e in events.values())

    # Duplicate callbacks change nothing: no CheckResult, no download, no write, no event.
    calls = check_result_calls(emulator)
    downloads = emulator.stats()["downloads"]["requests"]
    before = {tid: stack.redis.get(f"idv:result:tx:{tid}") for tid in flows}
    modified = {
        obj["Key"]: obj["LastModified"]
        for page in stack.store.client.get_paginator("list_objects_v2").paginate(
            Bucket=stack.store.bucket
        )
        for obj in page.get("Contents", [])
    }
    for tid in list(flows)[:50]:
        response = stack.callback(tid)
        assert (response.status_code, response.json()) == (200, {"status": "duplicate"})
    # Forced replays (an operator re-injecting events) reach the workers and are no-ops there.
    replay = stack.logdir / "replay.jsonl"
    replay.write_text(
        "\n".join(
            json.dumps({"transactionId": t, "passed": "Y", "subCode": "200"})
            for t in list(flows)[:20]
        )
    )
    out = stack.cli("callbacks", "replay", str(replay), "--trust", "--force")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {
        "accepted": 20, "duplicate": 0, "rejected": 0,
    }  # fmt: skip
    wait_until(
        lambda: stack.counter('idv_onboarding_total{outcome="already_done"}') >= 20,
        timeout=60,
        interval=0.2,
    )
    assert check_result_calls(emulator) == calls
    assert emulator.stats()["downloads"]["requests"] == downloads
    assert {tid: stack.redis.get(f"idv:result:tx:{tid}") for tid in flows} == before
    after = {
        obj["Key"]: obj["LastModified"]
        for page in stack.store.client.get_paginator("list_objects_v2").paginate(
            Bucket=stack.store.bucket
        )
        for obj in page.get("Contents", [])
    }
    assert after == modified
    assert stack.redis.xlen("idv:results") == 200
    assert len(stack.results()) == 200


def test_wrong_token_is_refused_and_counted(stack: Stack, emulator: EmulatorHandle) -> None:
    before = stack.counter('idv_callbacks_total{outcome="forbidden"}')
    calls = check_result_calls(emulator)
    tid = emulator.create_transaction(
        "eKYC", callback_url=stack.callback_url, callback_token="not-our-token"
    )
    emulator.complete(tid, video_size=1000)
    wait_until(lambda: emulator.transaction(tid)["callback_state"] == "failed", timeout=20)
    attempts = emulator.transaction(tid)["callbacks"]
    assert [a["status"] for a in attempts] == [403, 403, 403]
    wait_until(
        lambda: stack.counter('idv_callbacks_total{outcome="forbidden"}') == before + 3,
        timeout=10,
    )
    assert stack.record(tid) is None
    assert stack.redis.exists(f"idv:{{ledger}}:tx:{tid}") == 0
    assert check_result_calls(emulator) == calls


def test_process_not_completed_is_retried_until_the_flow_completes(
    stack: Stack, emulator: EmulatorHandle
) -> None:
    tid = emulator.create_transaction(
        "eKYC", callback_url=stack.callback_url, callback_token=TOKENS[0]
    )
    # The callback arrives before the provider has the result (or is replayed early).
    assert stack.callback(tid).status_code == 200
    wait_until(
        lambda: (
            emulator.stats()["rejected"].get("ProcessNotCompleted", 0) >= 2
            or check_result_calls(emulator) >= 2
        ),
        timeout=20,
    )
    assert stack.record(tid) is None
    done = emulator.complete(tid, video_size=600_000, callback=False)
    record = wait_for_record(stack, tid, timeout=60)
    assert record["status"] == "complete"
    assert_archived(stack, record, done)
    assert stack.deadletter("onboarding", tid) == {}


def test_mid_transfer_break_resumes(stack: Stack, emulator: EmulatorHandle) -> None:
    emulator.set_faults(break_downloads=1, break_after_bytes=3 * MIB)
    tid = emulator.create_transaction(
        "FACE_LIVENESS", callback_url=stack.callback_url, callback_token=TOKENS[1]
    )
    done = emulator.complete(tid, video_size=9 * MIB)
    record = wait_for_record(stack, tid)
    downloads = emulator.stats()["downloads"]
    assert downloads["broken"] == 1
    assert downloads["partial"] >= 1
    assert record["status"] == "complete"
    assert_archived(stack, record, done)


def test_expired_link_gets_a_fresh_one(stack: Stack, emulator: EmulatorHandle) -> None:
    emulator.set_faults(download_bytes_per_s=400_000, break_downloads=1, break_after_bytes=MIB)
    tid = emulator.create_transaction(
        "eKYC", callback_url=stack.callback_url, callback_token=TOKENS[0]
    )
    done = emulator.complete(tid, video_size=3 * MIB)
    wait_until(lambda: emulator.stats()["downloads"]["bytes_sent"] > 0, timeout=20)
    emulator.advance(16 * 60)  # the link (15 min) dies; the 30-minute window is still open
    emulator.set_faults(download_bytes_per_s=0)
    record = wait_for_record(stack, tid)
    assert emulator.stats()["downloads"]["forbidden"] >= 1
    assert check_result_calls(emulator) >= 2
    assert record["status"] == "complete"
    assert_archived(stack, record, done)


def test_evidence_lost_is_recorded_counted_and_dead_lettered(
    stack: Stack, emulator: EmulatorHandle
) -> None:
    lost_before = stack.counter('idv_evidence_lost_total{kind="video"}')
    emulator.set_faults(download_bytes_per_s=400_000, break_downloads=1, break_after_bytes=MIB)
    tid = emulator.create_transaction(
        "eKYC", callback_url=stack.callback_url, callback_token=TOKENS[0]
    )
    done = emulator.complete(tid, video_size=3 * MIB)
    wait_until(lambda: emulator.stats()["downloads"]["bytes_sent"] > 0, timeout=20)
    emulator.advance(31 * 60)  # past the window: no fresh link can be had any more
    emulator.set_faults(download_bytes_per_s=0)
    record = wait_for_record(stack, tid)
    assert record["status"] == "evidence_lost"
    assert record["evidence"]["video"] is None
    assert record["evidence"]["face"]["sha256"] == done["images"]["faceImg"]
    letter = stack.deadletter("evidence", tid)
    assert letter["code"] == "EvidenceLost"
    assert stack.counter('idv_evidence_lost_total{kind="video"}') == lost_before + 1
    keys = ObjectKeys(stack.settings.storage.s3_prefix)
    prefix = keys.evidence_prefix(tid, _completed(record))
    names = [
        o["Key"]
        for o in stack.store.client.list_objects_v2(Bucket=stack.store.bucket, Prefix=prefix).get(
            "Contents", []
        )
    ]
    assert Evidence.VIDEO.value not in " ".join(names)


def _completed(record: dict[str, Any]) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(record["completed_at"])


def test_permanent_error_is_dead_lettered(stack: Stack, emulator: EmulatorHandle) -> None:
    tid = emulator.create_transaction(
        "eKYC", callback_url=stack.callback_url, callback_token=TOKENS[0]
    )
    emulator.complete(tid, callback=False)
    emulator.advance(31 * 86400)  # the provider deleted the result (30-day retention)
    assert stack.callback(tid).status_code == 200
    wait_until(lambda: stack.deadletter("onboarding", tid) != {}, timeout=30)
    letter = stack.deadletter("onboarding", tid)
    assert letter["code"] == "TransactionIdInvalid"
    assert stack.record(tid) is None


def test_expired_message_is_dead_lettered_and_retried_late(
    stack: Stack, emulator: EmulatorHandle
) -> None:
    """A callback replayed after its window: the message expires, the operator retries it."""
    tid = emulator.create_transaction("FACE_LIVENESS")
    done = emulator.complete(tid, video_size=200_000, callback=False)
    replay = stack.logdir / "late.jsonl"
    replay.write_text(json.dumps({
        "params": {"transactionId": tid, "passed": "Y", "subCode": "200",
                   "productCode": "FACE_LIVENESS", "callbackToken": TOKENS[0]},
        "received_at": time.time() - 31 * 60,
    }))  # fmt: skip
    out = stack.cli("callbacks", "replay", str(replay))
    assert out.returncode == 0, out.stderr
    wait_until(lambda: stack.deadletter("onboarding", tid) != {}, timeout=30)
    assert stack.deadletter("onboarding", tid)["code"] == "Expired"
    assert stack.record(tid) is None

    with Cli(stack.settings.replace(broker_url=None), redis=stack.redis) as cli:
        dlq = cli.retrying_deadletters()
        assert dlq.retry("onboarding", tid)
    record = wait_for_record(stack, tid)
    assert record["status"] == "complete"  # the emulator's window is still open
    assert_archived(stack, record, done)


def _connected_to(pids: list[int], port: int) -> list[int]:
    """The processes with an open connection to ``port`` (the emulator: API and video)."""
    out = []
    for pid in pids:
        conns = psutil.Process(pid).net_connections("tcp")
        if any(c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
               for c in conns):  # fmt: skip
            out.append(pid)
    return out


def test_sigkill_mid_download_leaves_no_partial_object_and_completes(
    stack: Stack, emulator: EmulatorHandle
) -> None:
    # Videos up to (upload concurrency + 1) parts are buffered and sent without a multipart
    # upload (4 + 1 parts of 8 MiB by default); this one is larger, so it streams.
    settings = stack.settings
    buffered = (settings.storage.s3_upload_concurrency + 1) * settings.evidence.evidence_part_size
    emulator.set_faults(download_bytes_per_s=16 * MIB)
    tid = emulator.create_transaction(
        "FACE_LIVENESS", callback_url=stack.callback_url, callback_token=TOKENS[0]
    )
    done = emulator.complete(tid, video_size=buffered + 16 * MIB)
    # Wait until the multipart upload has started, then kill the process downloading.
    wait_until(lambda: emulator.stats()["downloads"]["bytes_sent"] > buffered + 2 * MIB, timeout=30)
    # The streaming process is among those connected to the emulator; the others only hold
    # idle keep-alive connections, so killing them too costs nothing.
    port = int(emulator.url.rsplit(":", 1)[1])
    victims = _connected_to([pid for w in stack.workers for pid in w.children()], port)
    assert victims
    downloads = emulator.stats()["downloads"]["requests"]
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    emulator.set_faults(download_bytes_per_s=0)
    # Taken over in seconds: the lease runs out (6 s), a heartbeat re-drives the transaction,
    # and another process downloads again.
    wait_until(lambda: emulator.stats()["downloads"]["requests"] > downloads, timeout=30)
    taken_over_s = time.monotonic() - killed
    assert taken_over_s <= 10.0, f"the download started again after {taken_over_s:.1f}s"

    keys = ObjectKeys(stack.settings.storage.s3_prefix)
    uploads = stack.store.client.list_multipart_uploads(Bucket=stack.store.bucket).get(
        "Uploads", []
    )
    assert any(u["Key"].endswith(f"{tid}/{Evidence.VIDEO.value}") for u in uploads)
    record = stack.record(tid)
    if record is None:  # nothing visible before the work is redone
        for u in uploads:
            assert stack.store.head(u["Key"]) is None

    record = wait_for_record(stack, tid, timeout=90)
    assert record["status"] == "complete"
    assert_archived(stack, record, done)
    assert record["evidence"]["video"]["key"] == keys.evidence(
        tid, _completed(record), Evidence.VIDEO
    )
    assert emulator.stats()["downloads"]["requests"] >= 2
