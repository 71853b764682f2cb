"""The onboarding service against the emulator, the S3 API (moto) and a real Redis.

Drives the paths one at a time, in-process (the Celery layer is covered by
``test_onboarding_e2e``): happy path and idempotency, a broken transfer resumed with Range, an
expired link refreshed by another CheckResult, evidence lost past the window, ProcessNotCompleted
and a permanent error. Time on the provider side moves with the emulator's clock.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis
from pydantic import SecretStr

from tests.fixtures.emulator import EmulatorHandle
from tests.fixtures.servers import wait_until
from worker.cloudauth.client import CloudAuthClient
from worker.cloudauth.errors import NotReadyError, TransactionInvalidError
from worker.jobs import KIND_EVIDENCE, OnboardingJob
from worker.keys import Evidence, ObjectKeys
from worker.observability import RedisMetrics
from worker.onboarding import OnboardingService, Outcome
from worker.ratelimit import RedisRateLimiter, limiter_redis
from worker.settings import Settings
from worker.storage import S3ObjectStore
from worker.stores import DeadLetterStore, LeaseManager, ResultStore
from worker.wiring import blocks, services

MIB = 1024 * 1024


def onboarding_settings(
    emulator: EmulatorHandle, s3_settings: Settings, redis_url: str, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "endpoint": emulator.url,
        "access_key_id": emulator.access_key_id,
        "access_key_secret": SecretStr(emulator.access_key_secret),
        "redis_url": redis_url,
        "onboarding_lease_s": 10.0,
        "evidence_part_size": 5 * MIB,
        "evidence_chunk_size": 64 * 1024,
    }
    values.update(overrides)
    return s3_settings.replace(**values)


@dataclass(frozen=True)
class Runtime:
    """The onboarding service as a worker node wires it, with the clients under it."""

    settings: Settings
    core: blocks.Core
    client: CloudAuthClient
    objects: S3ObjectStore
    evidence_http: httpx.Client
    results: ResultStore
    deadletters: DeadLetterStore
    leases: LeaseManager
    onboarding: OnboardingService
    stack: ExitStack = field(repr=False)

    @property
    def redis(self) -> redis.Redis:
        return self.core.redis

    @property
    def metrics(self) -> RedisMetrics:
        return self.core.metrics

    def close(self) -> None:
        self.stack.close()


def build_runtime(settings: Settings, *, limiter_max_wait: float | None = None) -> Runtime:
    """The worker node's onboarding wiring (``limiter_max_wait``: the limiter's bounded wait)."""
    stack = ExitStack()
    core = blocks.build_core(settings, stack)
    if limiter_max_wait is None:
        limiter = blocks.build_limiter(core, stack)
    else:
        limiter_client = limiter_redis(settings.redis)
        stack.callback(limiter_client.close)
        limiter = RedisRateLimiter(
            limiter_client,
            core.quotas,
            namespace=settings.redis.namespace,
            max_wait=limiter_max_wait,
        )
    client = blocks.build_client(core, limiter, stack)
    objects = blocks.build_objects(core, stack)
    http = blocks.build_evidence_http(core, stack)
    results = blocks.build_results(core)
    deadletters = blocks.build_deadletters(core)
    onboarding = services.build_onboarding(
        core,
        client=client,
        objects=objects,
        http=http,
        results=results,
        deadletters=deadletters,
        ledger=blocks.build_ledger(core),
    )
    leases = LeaseManager(core.redis, core.keys)
    return Runtime(
        settings, core, client, objects, http, results, deadletters, leases, onboarding, stack
    )


@pytest.fixture
def runtime(emulator: EmulatorHandle, s3_settings: Settings, redis_url: str) -> Iterator[Runtime]:
    rt = build_runtime(onboarding_settings(emulator, s3_settings, redis_url))
    yield rt
    rt.close()


def job_for(tid: str, completed_at: float | None = None, product: str = "eKYC") -> OnboardingJob:
    return OnboardingJob(
        transaction_id=tid,
        product_code=product,
        merchant_biz_id="bizid0001",
        completed_at=time.time() if completed_at is None else completed_at,
        window_s=1800.0,
    )


def check_result_calls(emulator: EmulatorHandle) -> int:
    by_product = emulator.stats()["actions"].get("CheckResult", {})
    return sum(s["served"] + s["errors"] for s in by_product.values())


def s3_sha256(store: S3ObjectStore, key: str) -> str:
    body = store.client.get_object(Bucket=store.bucket, Key=key)["Body"]
    digest = hashlib.sha256()
    for chunk in iter(lambda: body.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def run_in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def test_happy_path_archives_everything_and_is_idempotent(
    emulator: EmulatorHandle, runtime: Runtime, redis_client: redis.Redis
) -> None:
    tid = emulator.create_transaction("eKYC")
    done = emulator.complete(tid, video_size=7 * MIB + 123, callback=False)
    service = runtime.onboarding
    job = job_for(tid)

    outcome = service.process(job)

    assert outcome.status == "done"
    record = runtime.results.get_record("tx", tid)
    assert record is not None
    assert record["status"] == "complete"
    assert record["video_status"] == "stored"
    assert record["passed"] == "Y"
    store = runtime.objects
    keys = ObjectKeys(runtime.settings.storage.s3_prefix)
    video_key = keys.evidence(tid, job.completed_datetime, Evidence.VIDEO)
    assert record["evidence"]["video"]["key"] == video_key
    assert record["evidence"]["video"]["sha256"] == done["video_sha256"]
    assert s3_sha256(store, video_key) == done["video_sha256"]
    head = store.head(video_key)
    assert head is not None
    assert head.encryption == "AES256"
    images = {"faceImg": "face", "idImage": "id_front", "idBackImage": "id_back"}
    for wire_name, sha in done["images"].items():
        pointer = record["evidence"][images[wire_name]]
        assert pointer["sha256"] == sha
        assert s3_sha256(store, pointer["key"]) == sha
    # The record and the stream event carry pointers, never images or links.
    text = json.dumps(record)
    assert "http" not in text
    assert "/9j/" not in text  # JPEG Base64 prefix
    events = redis_client.xrange("idv:results")
    assert len(events) == 1
    assert events[0][1][b"status"] == b"complete"
    assert events[0][1][b"video_key"].decode() == video_key
    # The full result is in S3, images replaced by pointers, the presigned link gone.
    doc = json.loads(store.get_bytes(record["result"]["key"]))
    face = doc["result"]["ExtFaceInfo"]
    assert face["docVideoUrl"] == record["evidence"]["video"]
    assert face["faceImg"] == record["evidence"]["face"]
    assert doc["result"]["ExtIdInfo"]["ocrIdInfo"]  # the OCR fields are kept (in S3 only)
    assert "Signature=" not in json.dumps(doc)

    calls = check_result_calls(emulator)
    requests = emulator.stats()["downloads"]["requests"]
    again = service.process(job)
    assert again.status == "already_done"
    assert check_result_calls(emulator) == calls
    assert emulator.stats()["downloads"]["requests"] == requests
    assert len(redis_client.xrange("idv:results")) == 1


def test_stored_video_is_not_downloaded_again(emulator: EmulatorHandle, runtime: Runtime) -> None:
    """A run that died after the upload: the next one reuses the object (S3 HEAD sha256)."""
    tid = emulator.create_transaction("FACE_LIVENESS")
    emulator.complete(tid, video_size=300_000, callback=False)
    service = runtime.onboarding
    job = job_for(tid, product="FACE_LIVENESS")
    service.process(job)
    runtime.redis.delete(runtime.results.record_key("tx", tid))
    requests = emulator.stats()["downloads"]["requests"]
    outcome = service.process(job)
    assert outcome.status == "done"
    assert outcome.record["video_status"] == "reused"
    assert emulator.stats()["downloads"]["requests"] == requests


def test_broken_transfer_resumes_with_range(emulator: EmulatorHandle, runtime: Runtime) -> None:
    tid = emulator.create_transaction("eKYC")
    done = emulator.complete(tid, video_size=6 * MIB, callback=False)
    emulator.set_faults(break_downloads=2, break_after_bytes=1_500_000)
    outcome = runtime.onboarding.process(job_for(tid))
    downloads = emulator.stats()["downloads"]
    assert downloads["broken"] == 2
    assert downloads["partial"] >= 2
    assert outcome.record["evidence"]["video"]["sha256"] == done["video_sha256"]
    assert (
        s3_sha256(runtime.objects, outcome.record["evidence"]["video"]["key"])
        == (done["video_sha256"])
    )


def _slow_download_then_advance(
    emulator: EmulatorHandle, runtime: Runtime, advance_s: float
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Start archiving a slow download, move the provider's clock while it runs."""
    tid = emulator.create_transaction("eKYC")
    done = emulator.complete(tid, video_size=3 * MIB, callback=False)
    # ~2.5 s until the cut: time enough to move the clock before the transfer resumes.
    emulator.set_faults(download_bytes_per_s=400_000, break_downloads=1, break_after_bytes=MIB)
    thread, box = run_in_thread(lambda: runtime.onboarding.process(job_for(tid)))
    wait_until(lambda: emulator.stats()["downloads"]["bytes_sent"] > 0, timeout=10)
    emulator.advance(advance_s)
    emulator.set_faults(download_bytes_per_s=0)
    thread.join(timeout=60)
    assert not thread.is_alive()
    return tid, done, box


def test_expired_link_is_replaced_by_a_fresh_one(
    emulator: EmulatorHandle, runtime: Runtime
) -> None:
    calls = check_result_calls(emulator)
    _tid, done, box = _slow_download_then_advance(emulator, runtime, 16 * 60)
    assert "error" not in box, box.get("error")
    outcome: Outcome = box["value"]
    downloads = emulator.stats()["downloads"]
    assert downloads["forbidden"] >= 1  # the first link had expired
    assert check_result_calls(emulator) >= calls + 2  # a fresh link was asked for
    assert outcome.record["status"] == "complete"
    assert outcome.record["evidence"]["video"]["sha256"] == done["video_sha256"]


def test_evidence_lost_past_the_window_is_recorded_and_dead_lettered(
    emulator: EmulatorHandle, runtime: Runtime, redis_client: redis.Redis
) -> None:
    tid, _done, box = _slow_download_then_advance(emulator, runtime, 31 * 60)
    assert "error" not in box, box.get("error")
    outcome: Outcome = box["value"]
    assert outcome.evidence_lost is not None
    record = runtime.results.get_record("tx", tid)
    assert record is not None
    assert record["status"] == "evidence_lost"
    assert record["evidence"]["video"] is None
    assert record["evidence"]["face"] is not None  # the images were still archived
    letter = runtime.deadletters.get(KIND_EVIDENCE, tid)
    assert letter is not None
    assert letter.code == "EvidenceLost"
    assert letter.payload["job"]["transaction_id"] == tid
    snapshot = runtime.metrics.snapshot()
    assert snapshot['idv_evidence_lost_total{kind="video"}'] == 1
    # The aborted multipart upload (if any) left nothing visible.
    keys = ObjectKeys(runtime.settings.storage.s3_prefix)
    video_key = keys.evidence(tid, job_for(tid, record_time(record)).completed_datetime,
                              Evidence.VIDEO)  # fmt: skip
    assert runtime.objects.head(video_key) is None


def record_time(record: dict[str, Any]) -> float:
    from datetime import datetime

    return datetime.fromisoformat(record["completed_at"]).timestamp()


def test_process_not_completed_raises_and_leaves_nothing(
    emulator: EmulatorHandle, runtime: Runtime
) -> None:
    tid = emulator.create_transaction("eKYC")
    with pytest.raises(NotReadyError):
        runtime.onboarding.process(job_for(tid))
    assert runtime.results.get_record("tx", tid) is None
    assert not runtime.leases.is_held("onboarding", tid)


def test_permanent_error_after_retention(emulator: EmulatorHandle, runtime: Runtime) -> None:
    tid = emulator.create_transaction("eKYC")
    emulator.complete(tid, callback=False)
    emulator.advance(31 * 86400)
    with pytest.raises(TransactionInvalidError):
        runtime.onboarding.process(job_for(tid))
    assert runtime.results.get_record("tx", tid) is None


def test_id_only_product_has_images_and_no_video(
    emulator: EmulatorHandle, runtime: Runtime
) -> None:
    tid = emulator.create_transaction("ID_OCR", doc_type="00000001")
    done = emulator.complete(tid, callback=False)
    outcome = runtime.onboarding.process(job_for(tid, product="ID_OCR"))
    record = outcome.record
    assert record["status"] == "complete"
    assert record["video_status"] == "absent"
    assert record["evidence"]["video"] is None
    assert record["evidence"]["face"] is None
    assert record["evidence"]["id_front"]["sha256"] == done["images"]["idImage"]
    if "idBackImage" in done["images"]:
        assert record["evidence"]["id_back"]["sha256"] == done["images"]["idBackImage"]


def test_decoded_images_match_base64(emulator: EmulatorHandle, runtime: Runtime) -> None:
    """Images arrive as Base64 in CheckResult and are stored decoded, byte for byte."""
    tid = emulator.create_transaction("FACE_LIVENESS")
    emulator.complete(tid, video_size=1000, callback=False)
    reply = runtime.client.check_result(
        transaction_id=tid, merchant_biz_id="bizid0001", product_code="FACE_LIVENESS",
        is_return_image=True,
    )  # fmt: skip
    assert reply.ext_face_info is not None
    assert reply.ext_face_info.face_img is not None
    raw = base64.b64decode(reply.ext_face_info.face_img)
    outcome = runtime.onboarding.process(job_for(tid, product="FACE_LIVENESS"))
    key = outcome.record["evidence"]["face"]["key"]
    assert runtime.objects.get_bytes(key) == raw
    head = runtime.objects.head(key)
    assert head is not None
    assert head.content_type == "image/jpeg"


def test_a_fresh_link_beyond_the_limiters_wait_is_retried_not_lost(
    emulator: EmulatorHandle, s3_settings: Settings, redis_url: str
) -> None:
    """One CheckResult slot per 5 s and a 0.5 s bounded wait: the fresh-link call is refused
    for now (``MaxWaitExceeded``), long before the 30-minute window closes. That is a retry
    later, never "evidence lost"."""
    from worker.evidence import EvidenceUnavailable

    settings = onboarding_settings(emulator, s3_settings, redis_url, quotas={"eKYC": 0.2})
    rt = build_runtime(settings, limiter_max_wait=0.5)
    try:
        tid, _done, box = _slow_download_then_advance(emulator, rt, 16 * 60)
        assert isinstance(box.get("error"), EvidenceUnavailable), box
        assert rt.deadletters.get(KIND_EVIDENCE, tid) is None
        record = rt.results.get_record("tx", tid)
        assert record is None or record["status"] != "evidence_lost"
        assert 'idv_evidence_lost_total{kind="video"}' not in rt.metrics.snapshot()
    finally:
        rt.close()


def test_misconfigured_store_costs_one_download_and_is_never_retried(
    emulator: EmulatorHandle, runtime: Runtime
) -> None:
    """A store that does not report SSE under IDV_S3_VERIFY_SSE=strict: the first video is
    downloaded once and refused by a configuration error; later work downloads nothing."""
    from worker.errors import is_retryable
    from worker.storage import EncryptionNotApplied, StoreMisconfigured

    store = runtime.objects
    store.client.meta.events.register(
        "after-call.s3.HeadObject", lambda parsed, **_: parsed.pop("ServerSideEncryption", None)
    )
    video_requests: list[str] = []
    runtime.evidence_http.event_hooks["request"].append(lambda r: video_requests.append(r.method))
    first, second = (emulator.create_transaction("eKYC") for _ in range(2))
    for tid in (first, second):
        emulator.complete(tid, video_size=6 * MIB, callback=False)

    with pytest.raises(EncryptionNotApplied) as info:
        runtime.onboarding.process(job_for(first))
    assert not is_retryable(info.value)
    assert info.value.alert
    assert info.value.stops_lane
    assert "IDV_S3_VERIFY_SSE" in str(info.value)
    assert video_requests == ["GET"]
    with pytest.raises(StoreMisconfigured):
        runtime.onboarding.process(job_for(second))
    assert video_requests == ["GET"]  # the second video was not even requested
    assert runtime.results.get_record("tx", first) is None
