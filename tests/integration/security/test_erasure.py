"""Erasure of one merchant user on a versioned bucket, and no raw merchant user id anywhere.

A real ``redis-server`` with ``appendonly yes``, moto's S3 server with versioning on, the
emulator. A flow is started for the subject (``Initialize``) and archived (CheckResult, evidence,
result document, written twice so the bucket holds a noncurrent version), and a batch with a row
of the subject runs (DocOcrV2). Then: no Redis key or value and no byte of the append-only file
holds the raw id; the provider received only the keyed pseudonym. ``erase --merchant-user``
leaves no version and no delete marker of the subject's objects, aborts the upload in progress,
and writes an audit entry that holds only the pseudonym.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.batch import Rig, build_rig, write_manifest
from tests.fixtures.emulator import EmulatorHandle
from tests.fixtures.servers import RedisServer, wait_until
from tests.integration.onboarding.test_service import build_runtime
from tests.integration.security.scan import scan_redis
from worker.batch import ItemStatus
from worker.emulator.doctypes import FACE_SIDE, derive_fields
from worker.emulator.imagecheck import embed_payload
from worker.emulator.render import render_card
from worker.jobs import OnboardingJob
from worker.keys import KIND_TX
from worker.stores import DEVELOPMENT_SUBJECT_KEY, Pseudonyms
from worker.wiring import Cli

RAW = "cust-000042"
OTHER = "cust-000043"
NAME = "Qzerasurename"
KEY = "erasure-test-subject-key-0001"
PASSPORT = "00000001"
PSEUDONYM = Pseudonyms(KEY).merchant_user(RAW)


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test alone: its append-only file holds only this test's writes."""
    server = RedisServer(tmp_path / "redis", persistent=True).start()
    yield server
    server.stop()


@pytest.fixture
def rig(aof_redis: RedisServer, s3_endpoint: str, emulator: EmulatorHandle) -> Iterator[Rig]:
    for built in build_rig(aof_redis.url, s3_endpoint, emulator, subject_key=KEY):
        built.objects.client.put_bucket_versioning(
            Bucket=built.objects.bucket, VersioningConfiguration={"Status": "Enabled"}
        )
        yield built
        # build_rig drops current objects only: the versions go first.
        for key, version in _versions(built):
            built.objects.client.delete_object(
                Bucket=built.objects.bucket, Key=key, VersionId=version
            )


def _card(folder: Path, name: str, seed: bytes) -> str:
    fields = derive_fields(PASSPORT, FACE_SIDE, seed)
    fields.update(name=name)
    image = render_card(
        PASSPORT, FACE_SIDE, fields, "jpeg", embed_payload(PASSPORT, FACE_SIDE, fields, "200")
    )
    path = folder / f"{hashlib.sha256(seed).hexdigest()[:8]}.jpg"
    path.write_bytes(image)
    return path.name


def _aof_bytes(server: RedisServer) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(server.workdir.rglob("*.aof*")) if p.is_file())


def _versions(rig: Rig) -> list[tuple[str, str]]:
    client, bucket = rig.objects.client, rig.objects.bucket
    out = []
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        out += [(v["Key"], v["VersionId"]) for v in page.get("Versions", [])]
        out += [(m["Key"], m["VersionId"]) for m in page.get("DeleteMarkers", [])]
    return out


def _run_subject(rig: Rig, emulator: EmulatorHandle, tmp_path: Path) -> tuple[str, str]:
    """A flow and a batch row for RAW (and a batch row for OTHER); the transaction and batch."""
    cli = Cli(rig.settings, redis=rig.redis)
    try:
        started = cli.flow_starter().start(product_code="eKYC", merchant_user_id=RAW)
    finally:
        cli.close()
    tid = started.transaction_id
    emulator.complete(tid, video_size=300_000, callback=False)
    runtime = build_runtime(rig.settings)
    try:
        job = OnboardingJob(
            transaction_id=tid,
            product_code="eKYC",
            merchant_biz_id=started.merchant_biz_id,
            completed_at=time.time(),
        )
        assert runtime.onboarding.process(job).status == "done"
    finally:
        runtime.close()
    rows = [
        {"image": _card(tmp_path, name, seed), "doc_type": PASSPORT, "merchant_user_id": user}
        for name, seed, user in ((NAME, b"subject", RAW), ("Other", b"other", OTHER))
    ]
    submitted = rig.api.submit(write_manifest(tmp_path / "m.jsonl", rows))
    rig.run_queue()
    assert rig.store.progress(submitted.batch_id).counts.get(ItemStatus.DONE) == 2
    return tid, submitted.batch_id


def test_no_raw_id_in_redis_its_aof_or_at_the_provider_and_erasure_reaches_every_version(
    rig: Rig, aof_redis: RedisServer, emulator: EmulatorHandle, tmp_path: Path
) -> None:
    tid, _batch = _run_subject(rig, emulator, tmp_path)
    objects = rig.objects
    assert rig.api.result_store.get_record(KIND_TX, tid) is not None
    # A second version of the transaction's result document (as a re-archival writes), and an
    # upload in progress in its evidence folder.
    doc_key = next(k for k, _ in _versions(rig) if k.endswith(f"/{tid}.json"))
    body = objects.client.get_object(Bucket=objects.bucket, Key=doc_key)["Body"].read()
    objects.client.put_object(Bucket=objects.bucket, Key=doc_key, Body=body)
    folder = next(k for k, _ in _versions(rig) if f"/{tid}/" in k).rsplit("/", 1)[0] + "/"
    objects.client.create_multipart_upload(Bucket=objects.bucket, Key=folder + "late.mp4")

    # Redis: no key, no value, no byte of the append-only file holds the raw id.
    assert scan_redis(rig.redis, [RAW, OTHER]) == []
    assert any(PSEUDONYM.encode() in key for key in rig.redis.scan_iter())  # the index, keyed
    wait_until(lambda: PSEUDONYM.encode() in _aof_bytes(aof_redis), timeout=10)
    aof = _aof_bytes(aof_redis)
    assert RAW.encode() not in aof
    assert OTHER.encode() not in aof
    # The provider saw only pseudonyms, in Initialize and in DocOcrV2.
    sent = emulator._call("GET", "calls")["MerchantUserId"]
    assert sent["Initialize"] == [PSEUDONYM]
    assert PSEUDONYM in sent["DocOcrV2"]
    assert not any(RAW in ids or OTHER in ids for ids in sent.values())

    before = _versions(rig)
    cli = Cli(rig.settings, redis=rig.redis)
    try:
        report = cli.eraser().erase_merchant_user(RAW, by="dpo")
    finally:
        cli.close()

    after = _versions(rig)
    assert [k for k, _ in after if tid in k] == []  # no version, no delete marker
    item_keys = [k for k, _ in before if "/items/" in k]
    assert len([k for k, _ in after if "/items/" in k]) == len(item_keys) - 1  # OTHER's stays
    assert objects.client.list_multipart_uploads(Bucket=objects.bucket).get("Uploads", []) == []
    assert report.s3_uploads == 1
    assert report.s3_versions > report.s3_objects  # the noncurrent versions went too
    assert report.remaining == []
    # No version left in the bucket holds the subject's name (results.jsonl was rewritten and
    # its earlier versions purged).
    for key, version in after:
        body = objects.client.get_object(Bucket=objects.bucket, Key=key, VersionId=version)
        assert NAME.encode() not in body["Body"].read(), key
    # The audit entry: the keyed pseudonym, never the id nor its unkeyed digest.
    [(_, entry)] = rig.redis.xrange("idv:audit")
    text = json.dumps({k.decode(): v.decode() for k, v in entry.items()})
    assert entry[b"subject"].decode() == PSEUDONYM
    assert RAW not in text
    assert hashlib.sha256(RAW.encode()).hexdigest()[:16] not in text
    assert scan_redis(rig.redis, [PSEUDONYM], skip="idv:audit") == []


def test_the_pseudonym_depends_on_the_key() -> None:
    assert Pseudonyms(KEY).merchant_user(RAW) != Pseudonyms(KEY + "x").merchant_user(RAW)
    assert Pseudonyms(KEY).merchant_user(RAW) != Pseudonyms(KEY).merchant_user(OTHER)
    assert Pseudonyms(KEY).merchant_user(RAW) != Pseudonyms(KEY).transaction(RAW)
    assert len(PSEUDONYM) == 64  # fits MerchantUserId
    assert Pseudonyms(DEVELOPMENT_SUBJECT_KEY).merchant_user(RAW) != PSEUDONYM


def test_a_redis_client_sees_only_pseudonyms_in_batch_chunks(rig: Rig, tmp_path: Path) -> None:
    rows = [{"image": _card(tmp_path, NAME, b"c"), "doc_type": PASSPORT, "merchant_user_id": RAW}]
    submitted = rig.api.submit(write_manifest(tmp_path / "m.jsonl", rows))
    [row] = rig.store.read_chunk(submitted.batch_id, 0, 10)
    assert row.spec is not None
    assert row.spec.merchant_user_id == PSEUDONYM
