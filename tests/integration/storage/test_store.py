"""S3ObjectStore against real S3 API servers on loopback: moto, and s3rver when available.

Assertions follow the configured SSE and what each store implements (``S3Backend``), never
one store's literal answers; open uploads are what the store's ``UploadTracker`` still holds.
"""

from __future__ import annotations

import hashlib
import random
import tracemalloc
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from tests.fixtures.s3 import (
    RecordingTracker,
    S3Backend,
    drop_bucket,
    make_s3_settings,
    make_store,
    new_bucket_name,
)
from worker.keys import InvalidKeyError
from worker.settings import Settings
from worker.storage import (
    MIB,
    IntegrityError,
    NotSupported,
    ObjectNotFound,
    S3ObjectStore,
    StorageError,
    make_s3_client,
)

PART = 5 * MIB  # the smallest part size S3 allows, to keep payloads small


def payload(total: int, chunk: int = MIB, seed: int = 7) -> Iterator[bytes]:
    """``total`` pseudo-random bytes in ``chunk``-sized pieces, generated on the fly."""
    rng = random.Random(seed)
    left = total
    while left:
        n = min(chunk, left)
        left -= n
        yield rng.randbytes(n)


def sha256_of(chunks: Iterator[bytes]) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    for chunk in chunks:
        h.update(chunk)
        size += len(chunk)
    return size, h.hexdigest()


def record_operations(store: S3ObjectStore) -> list[str]:
    """Names of the S3 operations the store's client performs from now on."""
    calls: list[str] = []

    def before_call(model: Any, **_: Any) -> None:
        calls.append(model.name)

    store.client.meta.events.register("before-call.s3.*", before_call)
    return calls


def open_uploads(store: S3ObjectStore, prefix: str = "") -> list[str]:
    """Keys of the multipart uploads the store started and did not end (its tracker's view)."""
    assert isinstance(store.tracker, RecordingTracker), "build the store with a tracker"
    return store.tracker.keys(prefix)


def left_open(backend: S3Backend, *keys: str) -> list[str]:
    """What a failed upload of ``keys`` leaves open: nothing, unless the store cannot abort."""
    return [] if backend.aborts_uploads else sorted(keys)


def stored_sha256(store: S3ObjectStore, key: str) -> str:
    h = hashlib.sha256()
    body = store.client.get_object(Bucket=store.bucket, Key=key)["Body"]
    for chunk in body.iter_chunks(MIB):
        h.update(chunk)
    return h.hexdigest()


def test_stream_50mb_in_8mib_parts_in_bounded_memory(s3_endpoint_subprocess: str) -> None:
    # moto runs in another process here, so tracemalloc sees only this process's buffers.
    store = S3ObjectStore(
        make_s3_settings(s3_endpoint_subprocess, new_bucket_name()).storage,
        tracker=RecordingTracker(),
    )
    store.ensure_bucket()
    try:
        total, part_size, chunk = 50 * 1000 * 1000, 8 * MIB, MIB
        size, digest = sha256_of(payload(total, chunk))
        store.put_bytes("warm-up", b"x", content_type="text/plain")  # client set-up, not ours
        ops = record_operations(store)

        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            stored = store.put_stream(
                "evidence/2026/01/02/tx1/video.webm",
                payload(total, chunk),
                content_type="video/webm",
                metadata={"transaction": "tx1"},
                part_size=part_size,
            )
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

        # The parts in flight plus the one being filled, and a couple of chunks; one part
        # more (8 MiB) would fail.
        parts_held = store.upload_concurrency + 1
        assert parts_held == 4  # the default s3_upload_concurrency is 3
        assert peak < parts_held * part_size + 6 * MIB, f"peak {peak / MIB:.1f} MiB"
        assert ops.count("UploadPart") == 6  # 5 full 8 MiB parts + the rest
        assert ops[0] == "CreateMultipartUpload"
        assert "PutObject" not in ops
        assert stored.size == size == total
        assert stored.sha256 == digest
        assert stored.encryption == store.sse == "AES256"  # moto reports SSE, strict mode
        assert stored.content_type == "video/webm"
        # Streamed: the hash is the caller's to keep (records), not rewritten onto the object.
        assert stored.metadata == {"transaction": "tx1"}
        assert stored_sha256(store, stored.key) == digest
        head = store.client.head_object(Bucket=store.bucket, Key=stored.key)
        assert head["ServerSideEncryption"] == store.sse
        assert "sha256" not in head["Metadata"]
        assert "CopyObject" not in ops
        assert open_uploads(store) == []
    finally:
        drop_bucket(store)
        store.close()


def test_put_bytes_single_put_with_sse_and_metadata(
    object_store: S3ObjectStore, s3_backend: S3Backend, s3_settings: Settings
) -> None:
    data = b'{"passed": "Y"}'
    ops = record_operations(object_store)
    stored = object_store.put_bytes(
        "results/2026/01/02/tx1.json", data, content_type="application/json", metadata={"v": "1"}
    )
    assert ops == ["PutObject", "HeadObject"]
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.size == len(data)
    assert stored.etag == hashlib.md5(data, usedforsecurity=False).hexdigest()
    # moto echoes the SSE header on HEAD; s3rver accepts it silently (verify mode "reported").
    head = object_store.client.head_object(Bucket=object_store.bucket, Key=stored.key)
    assert head.get("ServerSideEncryption") == s3_backend.reported_sse(s3_settings)
    assert stored.encryption == s3_backend.reported_sse(s3_settings)
    assert object_store.head(stored.key) == stored
    assert object_store.get_bytes(stored.key) == data
    assert object_store.exists(stored.key)
    object_store.delete(stored.key)
    assert not object_store.exists(stored.key)
    assert object_store.head(stored.key) is None
    object_store.delete(stored.key)  # deleting again is not an error


def test_small_stream_is_one_put_object(
    object_store: S3ObjectStore, s3_backend: S3Backend, s3_settings: Settings
) -> None:
    ops = record_operations(object_store)
    chunks = [b"a" * 1000, b"", b"b" * 3000]
    stored = object_store.put_stream("s/face.jpg", iter(chunks), content_type="image/jpeg")
    assert ops == ["PutObject", "HeadObject"]
    assert stored.sha256 == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert object_store.get_bytes("s/face.jpg") == b"".join(chunks)
    assert stored.encryption == s3_backend.reported_sse(s3_settings)


def test_empty_stream_stores_an_empty_object(object_store: S3ObjectStore) -> None:
    stored = object_store.put_stream("s/empty", iter([]), content_type="application/octet-stream")
    assert stored.size == 0
    assert stored.sha256 == hashlib.sha256(b"").hexdigest()


def test_exact_multiple_of_part_size_sends_no_empty_part(object_store: S3ObjectStore) -> None:
    ops = record_operations(object_store)
    size, digest = sha256_of(payload(2 * PART, chunk=3 * MIB))
    stored = object_store.put_stream(
        "s/two-parts", payload(2 * PART, chunk=3 * MIB), content_type="video/webm", part_size=PART
    )
    assert ops.count("UploadPart") == 2
    assert (stored.size, stored.sha256) == (size, digest)
    assert stored_sha256(object_store, "s/two-parts") == digest


def test_expected_sha256_is_stored_up_front_without_a_copy(object_store: S3ObjectStore) -> None:
    size, digest = sha256_of(payload(PART + 10))
    ops = record_operations(object_store)
    stored = object_store.put_stream(
        "s/known",
        payload(PART + 10),
        content_type="video/webm",
        part_size=PART,
        expected_size=size,
        expected_sha256=digest.upper(),
    )
    assert "CopyObject" not in ops
    assert stored.sha256 == digest


@pytest.mark.parametrize("concurrency", [1, 3])
def test_iterator_failing_midway_leaves_no_object_and_no_upload(
    object_store: S3ObjectStore, s3_backend: S3Backend, concurrency: int
) -> None:
    # Past concurrency + 1 parts the upload streams: `concurrency` parts in flight, one more
    # full, then the source breaks.
    def broken_source() -> Iterator[bytes]:
        yield from payload((concurrency + 2) * PART + MIB)
        raise ConnectionError("source download broke")

    ops = record_operations(object_store)
    with pytest.raises(ConnectionError, match="source download broke"):
        object_store.put_stream(
            "s/broken",
            broken_source(),
            content_type="video/webm",
            part_size=PART,
            concurrency=concurrency,
        )
    # The upload had really started; the last part may have been cancelled before it went.
    assert concurrency + 1 <= ops.count("UploadPart") <= concurrency + 2
    assert ops[-1] == "AbortMultipartUpload"
    assert object_store.head("s/broken") is None
    assert open_uploads(object_store) == left_open(s3_backend, "s/broken")


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self) -> Iterator[bytes]:
        yield self.body


def test_store_failing_midway_aborts_and_closes_the_source(
    s3_settings: Settings, s3_backend: S3Backend, boto_session: boto3.session.Session
) -> None:
    # Two attempts keep botocore's back-off short; the part is not sent again by the store.
    client = make_s3_client(s3_settings.storage, max_attempts=2, session=boto_session)
    object_store = S3ObjectStore(
        s3_settings.storage, client=client, tracker=RecordingTracker(), part_attempts=1
    )
    # Fault injected at the client's edge: from the second part on, the store answers 503.
    slow_down = (
        b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
        b"<Message>Please reduce your request rate.</Message></Error>"
    )
    sent: list[int] = []  # part numbers, one per attempt

    def unavailable(request: Any, **_: Any) -> AWSResponse | None:
        sent.append(int(parse_qs(urlsplit(request.url).query)["partNumber"][0]))
        if sent[-1] == 1:
            return None  # first part goes through
        return AWSResponse(request.url, 503, {}, _Raw(slow_down))

    closed: list[bool] = []

    def source() -> Iterator[bytes]:
        try:
            yield from payload(3 * PART)
        finally:
            closed.append(True)

    object_store.client.meta.events.register("before-send.s3.UploadPart", unavailable)
    with pytest.raises(StorageError) as info:
        object_store.put_stream(
            "s/unavailable", source(), content_type="video/webm", part_size=PART
        )
    err = info.value
    assert (err.operation, err.code, err.retryable) == ("UploadPart", "SlowDown", True)
    # Part 1 once; part 2 and its one retry; part 3 went out alongside (twice too) unless
    # part 2's failure was seen before it filled up.
    assert sent.count(1) == 1
    assert sent.count(2) == 2
    assert sent.count(3) in (0, 2)
    assert set(sent) <= {1, 2, 3}
    assert closed == [True]
    assert object_store.head("s/unavailable") is None
    assert open_uploads(object_store) == left_open(s3_backend, "s/unavailable")


def test_part_failing_for_a_while_is_sent_again_without_restarting(
    s3_settings: Settings, boto_session: boto3.session.Session
) -> None:
    """A store outage longer than botocore's retries: the failed part is sent again from its
    buffer, the upload stays open, the source is read once - nothing starts from byte 0."""
    client = make_s3_client(s3_settings.storage, max_attempts=1, session=boto_session)
    store = S3ObjectStore(
        s3_settings.storage, client=client, tracker=RecordingTracker(), part_attempts=3
    )
    slow_down = b"<?xml version='1.0'?><Error><Code>SlowDown</Code></Error>"
    sent: list[int] = []

    def flaky(request: Any, **_: Any) -> AWSResponse | None:
        sent.append(int(parse_qs(urlsplit(request.url).query)["partNumber"][0]))
        if sent[-1] == 2 and sent.count(2) <= 2:  # part 2 fails twice, then goes through
            return AWSResponse(request.url, 503, {}, _Raw(slow_down))
        return None

    reads = 0

    def source() -> Iterator[bytes]:
        nonlocal reads
        reads += 1
        yield from payload(5 * PART + 7)

    store.client.meta.events.register("before-send.s3.UploadPart", flaky)
    ops = record_operations(store)
    try:
        stored = store.put_stream("s/flaky", source(), content_type="video/webm", part_size=PART,
                                  concurrency=1)  # fmt: skip
        size, digest = sha256_of(payload(5 * PART + 7))
        assert (stored.size, stored.sha256) == (size, digest)
        assert stored_sha256(store, "s/flaky") == digest
        assert sent.count(2) == 3
        assert sent.count(1) == 1
        assert sent.count(6) == 1
        assert ops.count("CreateMultipartUpload") == 1
        assert "AbortMultipartUpload" not in ops
        assert reads == 1
        assert open_uploads(store) == []
    finally:
        store.close()


def test_source_not_matching_expected_hash_is_never_completed(
    object_store: S3ObjectStore, s3_backend: S3Backend
) -> None:
    ops = record_operations(object_store)
    with pytest.raises(IntegrityError) as info:
        object_store.put_stream(
            "s/bad-hash",
            payload(PART + 5),
            content_type="video/webm",
            part_size=PART,
            expected_sha256="0" * 64,
        )
    assert info.value.check == "sha256"
    assert info.value.key == "s/bad-hash"
    assert "CompleteMultipartUpload" not in ops
    assert object_store.head("s/bad-hash") is None
    assert open_uploads(object_store) == left_open(s3_backend, "s/bad-hash")


@pytest.mark.parametrize("expected_size", [10, 3 * MIB])
def test_source_not_matching_expected_size_is_rejected(
    object_store: S3ObjectStore, expected_size: int
) -> None:
    with pytest.raises(IntegrityError) as info:
        object_store.put_stream(
            "s/bad-size",
            payload(2 * MIB),
            content_type="video/webm",
            part_size=PART,
            expected_size=expected_size,
        )
    assert info.value.check == "size"
    assert object_store.head("s/bad-size") is None


@pytest.mark.parametrize("total", [100, PART + 100], ids=["single-put", "multipart"])
def test_store_returning_other_content_fails_verification_and_deletes(
    object_store: S3ObjectStore, total: int
) -> None:
    # Fault injected at the client's edge: the store reports a different sha256 than we sent
    # (as after a concurrent overwrite or a store that mangles metadata).
    def tamper(parsed: dict[str, Any], **_: Any) -> None:
        if "Metadata" in parsed:
            parsed["Metadata"]["sha256"] = "f" * 64

    object_store.client.meta.events.register("after-call.s3.HeadObject", tamper)
    try:
        with pytest.raises(IntegrityError) as info:
            object_store.put_stream(
                "s/tampered", payload(total), content_type="video/webm", part_size=PART
            )
    finally:
        object_store.client.meta.events.unregister("after-call.s3.HeadObject", tamper)
    assert info.value.check == "sha256"
    assert info.value.expected == sha256_of(payload(total))[1]
    assert object_store.head("s/tampered") is None
    assert open_uploads(object_store) == []


@pytest.mark.parametrize(
    "key", ["../escape", "/abs", "a//b", "a/./b", "a/../b", "a\\b", "a\x00b", "a\nb", ""]
)
def test_hostile_keys_are_rejected_before_any_request(
    object_store: S3ObjectStore, key: str
) -> None:
    ops = record_operations(object_store)
    with pytest.raises(InvalidKeyError):
        object_store.put_bytes(key, b"x", content_type="text/plain")
    with pytest.raises(InvalidKeyError):
        object_store.put_stream(key, iter([b"x"]), content_type="text/plain")
    with pytest.raises(InvalidKeyError):
        object_store.head(key)
    assert ops == []


def test_missing_object_raises_not_found_with_data(object_store: S3ObjectStore) -> None:
    with pytest.raises(ObjectNotFound) as info:
        object_store.get_bytes("nothing/here")
    err = info.value
    assert (err.key, err.operation, err.code, err.retryable) == (
        "nothing/here",
        "GetObject",
        "NoSuchKey",
        False,
    )
    assert "http" not in str(err)


def test_get_bytes_refuses_large_objects(object_store: S3ObjectStore) -> None:
    object_store.put_bytes("s/big", b"x" * 2000, content_type="text/plain")
    with pytest.raises(StorageError) as info:
        object_store.get_bytes("s/big", max_size=1000)
    assert info.value.code == "TooLarge"


def test_missing_bucket_is_a_storage_error(s3_backend: S3Backend) -> None:
    store = S3ObjectStore(s3_backend.settings(new_bucket_name()).storage)
    with pytest.raises(StorageError) as info:
        store.put_bytes("k", b"x", content_type="text/plain")
    assert info.value.code == "NoSuchBucket"
    assert info.value.retryable is False
    store.close()


def test_abort_stale_uploads_respects_prefix_and_age(
    object_store: S3ObjectStore, s3_backend: S3Backend
) -> None:
    if not s3_backend.lists_uploads:
        pytest.skip(f"{s3_backend.name} does not implement ListMultipartUploads")
    client, bucket = object_store.client, object_store.bucket

    def listed(prefix: str = "") -> list[Any]:
        return list(client.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", []))

    # Uploads left behind by a killed worker.
    client.create_multipart_upload(Bucket=bucket, Key="evidence/a/video.webm")
    client.create_multipart_upload(Bucket=bucket, Key="other/b")
    initiated = listed("evidence/")[0]["Initiated"]

    young = initiated + timedelta(seconds=10)
    assert object_store.abort_stale_uploads("evidence/", 60, now=young) == 0
    old = initiated + timedelta(seconds=120)
    assert object_store.abort_stale_uploads("evidence/", 60, now=old) == 1
    assert listed("evidence/") == []
    assert [u["Key"] for u in listed()] == ["other/b"]


def test_one_upload_is_listed_by_exact_key_and_aborted(
    object_store: S3ObjectStore, s3_backend: S3Backend
) -> None:
    client, bucket = object_store.client, object_store.bucket
    upload_id = client.create_multipart_upload(Bucket=bucket, Key="e/v.webm")["UploadId"]
    client.create_multipart_upload(Bucket=bucket, Key="e/v.webm.other")
    if s3_backend.lists_uploads:
        assert [(u.key, u.upload_id) for u in object_store.list_uploads("e/v.webm")] == [
            ("e/v.webm", upload_id)
        ]
    else:
        with pytest.raises(NotSupported) as listing:
            object_store.list_uploads("e/v.webm")
        assert listing.value.retryable is False
    if s3_backend.aborts_uploads:
        assert object_store.abort_upload("e/v.webm", upload_id) is True
        assert object_store.abort_upload("e/v.webm", upload_id) is False  # gone already
    else:
        with pytest.raises(NotSupported) as abort:
            object_store.abort_upload("e/v.webm", upload_id)
        assert (abort.value.operation, abort.value.retryable) == ("AbortMultipartUpload", False)


def test_ensure_bucket_creates_once(
    s3_backend: S3Backend, boto_session: boto3.session.Session
) -> None:
    store = make_store(s3_backend.settings(new_bucket_name()), boto_session)
    try:
        store.ensure_bucket()
        store.ensure_bucket()
        store.client.head_bucket(Bucket=store.bucket)
        assert store.put_bytes("k", b"v", content_type="text/plain").size == 1
    finally:
        drop_bucket(store)
        store.close()


@pytest.mark.parametrize("sse", ["none", "aws:kms", "AES256"])
def test_encryption_modes(
    s3_backend: S3Backend, s3_bucket: str, boto_session: boto3.session.Session, sse: str
) -> None:
    kms = {"s3_kms_key_id": "alias/idv"} if sse == "aws:kms" else {}
    settings = s3_backend.settings(s3_bucket, s3_sse=sse, **kms)
    store = make_store(settings, boto_session)
    stored = store.put_bytes("k", b"v", content_type="text/plain")
    assert stored.encryption == s3_backend.reported_sse(settings)
    store.close()


def test_bad_configuration_and_arguments_are_rejected(
    s3_settings: Settings, object_store: S3ObjectStore
) -> None:
    with pytest.raises(ValueError, match="s3_sse"):
        S3ObjectStore(s3_settings.storage.model_copy(update={"s3_sse": "rot13"}))
    store = object_store
    with pytest.raises(ValueError, match="reserved"):
        store.put_bytes("k", b"v", content_type="text/plain", metadata={"SHA256": "x"})
    with pytest.raises(ValueError, match="part_size"):
        store.put_stream("k", iter([b"v"]), content_type="text/plain", part_size=MIB)
    assert store.head("k") is None
