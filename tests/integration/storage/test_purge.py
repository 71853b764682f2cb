"""Purging on a bucket that keeps copies (moto's S3 server): every version and delete marker
goes, uploads in progress are aborted, locked and replicated copies are reported, and doctor
warns about the bucket settings that keep copies."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from tests.fixtures.s3 import make_s3_settings, make_store, new_bucket_name
from worker.commands.doctor import check_s3_copies
from worker.storage import ReplicationRule, S3ObjectStore, lifecycle_configuration
from worker.wiring import Cli

FOLDER = "evidence/2024-01-02/tx0001/"


def versions(store: S3ObjectStore, prefix: str = "") -> list[tuple[str, str, bool]]:
    """``(key, version id, is a delete marker)`` of everything under ``prefix``."""
    out = []
    for page in store.client.get_paginator("list_object_versions").paginate(
        Bucket=store.bucket, Prefix=prefix
    ):
        out += [(v["Key"], v["VersionId"], False) for v in page.get("Versions", [])]
        out += [(m["Key"], m["VersionId"], True) for m in page.get("DeleteMarkers", [])]
    return out


def uploads(store: S3ObjectStore, prefix: str = "") -> list[str]:
    listing = store.client.list_multipart_uploads(Bucket=store.bucket, Prefix=prefix)
    return [u["Key"] for u in listing.get("Uploads", [])]


def _drop(store: S3ObjectStore, *, lock: bool) -> None:
    """Remove everything, locks included (GOVERNANCE is bypassed, holds released)."""
    client, bucket = store.client, store.bucket
    for key in uploads(store):
        for u in client.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", []):
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=u["UploadId"])
    for key, version, marker in versions(store):
        if lock and not marker:
            client.put_object_legal_hold(
                Bucket=bucket, Key=key, VersionId=version, LegalHold={"Status": "OFF"}
            )
        client.delete_object(
            Bucket=bucket, Key=key, VersionId=version, BypassGovernanceRetention=True
        )
    client.delete_bucket(Bucket=bucket)


def _store(endpoint: str, *, lock: bool = False) -> Iterator[S3ObjectStore]:
    store = make_store(make_s3_settings(endpoint, new_bucket_name()))
    extra: dict[str, Any] = {"ObjectLockEnabledForBucket": True} if lock else {}
    store.client.create_bucket(Bucket=store.bucket, **extra)
    store.client.put_bucket_versioning(
        Bucket=store.bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    yield store
    _drop(store, lock=lock)
    store.close()


@pytest.fixture
def versioned(s3_endpoint: str) -> Iterator[S3ObjectStore]:
    yield from _store(s3_endpoint)


@pytest.fixture
def locked(s3_endpoint: str) -> Iterator[S3ObjectStore]:
    yield from _store(s3_endpoint, lock=True)


def put(store: S3ObjectStore, key: str, body: bytes = b"personal", **extra: Any) -> str:
    answer = store.client.put_object(Bucket=store.bucket, Key=key, Body=body, **extra)
    return str(answer.get("VersionId"))


def test_a_plain_delete_on_a_versioned_bucket_keeps_the_data(versioned: S3ObjectStore) -> None:
    """Why purging exists: DeleteObject only adds a marker; the data stays readable."""
    key = FOLDER + "id-front.jpg"
    version = put(versioned, key)
    versioned.delete(key)
    assert versioned.head(key) is None
    body = versioned.client.get_object(Bucket=versioned.bucket, Key=key, VersionId=version)
    assert body["Body"].read() == b"personal"


def test_purge_removes_every_version_marker_and_upload(versioned: S3ObjectStore) -> None:
    put(versioned, FOLDER + "video.mp4", b"v1")
    put(versioned, FOLDER + "video.mp4", b"v2")  # overwritten: v1 is noncurrent
    put(versioned, FOLDER + "face.jpg")
    versioned.delete(FOLDER + "face.jpg")  # a delete marker over the data
    put(versioned, FOLDER + "gone.jpg")
    versioned.delete(FOLDER + "gone.jpg")
    versioned.client.create_multipart_upload(Bucket=versioned.bucket, Key=FOLDER + "part.mp4")
    neighbour = "evidence/2024-01-02/tx0002/video.mp4"
    put(versioned, neighbour)

    outcome = versioned.purge(FOLDER)

    assert versions(versioned, FOLDER) == []
    assert uploads(versioned, FOLDER) == []
    assert (outcome.objects, outcome.versions, outcome.delete_markers, outcome.uploads) == (
        3,
        4,
        2,
        1,
    )
    assert outcome.remaining == []
    assert [k for k, _, _ in versions(versioned)] == [neighbour]  # the next folder stays


def test_purge_of_one_key_and_of_noncurrent_versions_only(versioned: S3ObjectStore) -> None:
    key = "batches/b1/results.jsonl"
    put(versioned, key, b"with the row")
    put(versioned, key, b"without the row")
    put(versioned, key + ".bak")  # shares the prefix, not the key
    outcome = versioned.purge(key, match=key.__eq__, noncurrent_only=True)
    assert outcome.versions == 1
    assert outcome.objects == 0  # the current version stays
    left = [v for k, v, _ in versions(versioned, key) if k == key]
    assert len(left) == 1
    body = versioned.client.get_object(Bucket=versioned.bucket, Key=key)["Body"].read()
    assert body == b"without the row"
    assert versioned.purge(key, match=key.__eq__).objects == 1
    assert [k for k, _, _ in versions(versioned, key)] == [key + ".bak"]


def test_locked_versions_are_reported_not_counted(locked: S3ObjectStore) -> None:
    until = datetime.now(UTC) + timedelta(days=1)
    retained = put(
        locked,
        FOLDER + "retained.jpg",
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=until,
        ChecksumAlgorithm="SHA256",  # S3 requires a checksum on a locked write
    )
    held = put(
        locked, FOLDER + "held.jpg", ObjectLockLegalHoldStatus="ON", ChecksumAlgorithm="SHA256"
    )
    put(locked, FOLDER + "free.jpg")

    outcome = locked.purge(FOLDER)

    assert outcome.objects == 1  # free.jpg
    reasons = {(r.key, r.version_id): r.reason for r in outcome.remaining}
    assert set(reasons) == {(FOLDER + "retained.jpg", retained), (FOLDER + "held.jpg", held)}
    assert reasons[(FOLDER + "retained.jpg", retained)].startswith(
        "Object Lock retention GOVERNANCE until "
    )
    assert reasons[(FOLDER + "held.jpg", held)] == "Object Lock legal hold ON"
    assert sorted(k for k, _, _ in versions(locked, FOLDER)) == [
        FOLDER + "held.jpg",
        FOLDER + "retained.jpg",
    ]


def test_replicated_keys_are_reported(versioned: S3ObjectStore, s3_endpoint: str) -> None:
    versioned.client.put_bucket_replication(
        Bucket=versioned.bucket,
        ReplicationConfiguration={
            "Role": "arn:aws:iam::123456789012:role/replication",
            "Rules": [
                {
                    "ID": "to-dr",
                    "Status": "Enabled",
                    "Prefix": "evidence/",
                    "Destination": {"Bucket": "arn:aws:s3:::idv-dr"},
                }
            ],
        },
    )
    put(versioned, FOLDER + "video.mp4")
    put(versioned, "batches/b1/items/i1.json")
    rules = versioned.bucket_copies().replication
    # moto keeps the rule but reports its filter as the whole bucket (Prefix "").
    assert [(r.rule_id, r.destination) for r in rules] == [("to-dr", "arn:aws:s3:::idv-dr")]
    outcome = versioned.purge(FOLDER, replication=rules)
    assert outcome.objects == 1  # gone here ...
    [left] = outcome.remaining  # ... and reported as still replicated
    assert left.key == FOLDER + "video.mp4"
    assert "arn:aws:s3:::idv-dr" in left.reason
    assert "does not reach the replica" in versioned.bucket_copies().warnings()[-1]


def test_a_replication_rule_covers_only_its_prefix() -> None:
    rule = ReplicationRule("r", "evidence/", "arn:aws:s3:::dr")
    assert rule.covers("evidence/d/t/video.mp4")
    assert not rule.covers("batches/b/items/i.json")
    assert ReplicationRule("tags", None, "arn:aws:s3:::dr").covers("batches/b/items/i.json")


def test_bucket_copies_and_the_doctor_warning(
    locked: S3ObjectStore, s3_endpoint: str, redis_url: str
) -> None:
    copies = locked.bucket_copies()
    assert copies.versioning == "Enabled"
    assert copies.object_lock == "enabled"
    assert not copies.noncurrent_expiry
    warnings = copies.warnings()
    assert len(warnings) == 2
    assert "noncurrent" in warnings[0]
    assert "Object Lock" in warnings[1]

    settings = make_s3_settings(s3_endpoint, locked.bucket, redis_url=redis_url)
    client = redis.Redis.from_url(redis_url)
    cli = Cli(settings, redis=client)
    try:
        result = check_s3_copies(cli)
        assert (result.ok, result.warning) == (True, True)
        assert "Object Lock" in result.detail
        # The retention rules expire noncurrent versions: that warning goes.
        locked.client.put_bucket_lifecycle_configuration(
            Bucket=locked.bucket, LifecycleConfiguration=lifecycle_configuration("", 30)
        )
        assert locked.bucket_copies().noncurrent_expiry
        result = check_s3_copies(cli)
        assert "noncurrent" not in result.detail
        assert result.warning  # Object Lock still
    finally:
        cli.close()
        client.close()


def test_a_plain_bucket_gets_no_warning(s3_endpoint: str, redis_url: str) -> None:
    store = make_store(make_s3_settings(s3_endpoint, new_bucket_name()))
    store.ensure_bucket()
    try:
        copies = store.bucket_copies()
        assert (copies.versioning, copies.object_lock, copies.replication) == (None, None, ())
        assert copies.warnings() == []
        # Without versions, purge still removes the objects (version "null").
        put(store, FOLDER + "a.jpg")
        assert store.purge(FOLDER).objects == 1
        assert list(store.list_keys(FOLDER)) == []
    finally:
        store.client.delete_bucket(Bucket=store.bucket)
        store.close()
