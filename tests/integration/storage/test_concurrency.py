"""Concurrent multipart uploads and their checksums, on every store available.

Faults and delays are injected at the client's edge (botocore events), never inside the store.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from tests.fixtures.s3 import RecordingTracker, S3Backend
from tests.integration.storage.test_store import (
    PART,
    left_open,
    open_uploads,
    payload,
    record_operations,
    sha256_of,
    stored_sha256,
)
from worker.settings import Settings
from worker.storage import (
    S3ObjectStore,
    StorageError,
    make_s3_client,
)

# Long enough never to fire when things work; a test that reaches it fails.
STUCK_S = 20.0


def part_number(request: Any) -> int:
    return int(parse_qs(urlsplit(request.url).query)["partNumber"][0])


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self) -> Iterator[bytes]:
        yield self.body


def error_response(request: Any, status: int, code: str) -> AWSResponse:
    body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code></Error>".encode()
    return AWSResponse(request.url, status, {}, _Raw(body))


def test_settings_pick_the_concurrency(s3_settings: Settings) -> None:
    store = S3ObjectStore(s3_settings.replace(s3_upload_concurrency=7).storage)
    try:
        assert store.upload_concurrency == 7
        assert S3ObjectStore(s3_settings.storage, client=store.client).upload_concurrency == 3
        with pytest.raises(ValueError, match="concurrency"):
            store.put_stream("k", iter([b"v"]), content_type="text/plain", concurrency=0)
    finally:
        store.close()


@pytest.mark.parametrize("limit", [1, 3])
def test_never_more_than_n_parts_in_flight(object_store: S3ObjectStore, limit: int) -> None:
    """At most ``limit`` parts in flight plus the one being filled: the source is never read
    more than ``limit + 1`` parts ahead of the parts the store has acknowledged."""
    lock = threading.Lock()
    completed = 0  # parts the store has acknowledged
    calls = peak_calls = 0  # UploadPart requests running at once
    ahead: list[int] = []  # bytes read but not acknowledged, each time the source is read
    release = threading.Event()

    def before_send(request: Any, **_: Any) -> None:
        nonlocal calls, peak_calls
        with lock:
            calls += 1
            peak_calls = max(peak_calls, calls)
        # Parts are held until the source has given `limit + 1` parts and one chunk more:
        # a store without backpressure would read on at once, before any part is done.
        assert release.wait(STUCK_S), "parts never released"

    def after_call(http_response: Any, **_: Any) -> None:
        nonlocal calls, completed
        with lock:
            calls -= 1
            completed += http_response.status_code == 200

    def source() -> Iterator[bytes]:
        consumed = 0
        for chunk in payload((limit + 3) * PART):
            with lock:
                ahead.append(consumed - completed * PART)
            if consumed >= (limit + 1) * PART:
                release.set()
            yield chunk
            consumed += len(chunk)

    events = object_store.client.meta.events
    events.register("before-send.s3.UploadPart", before_send)
    events.register("after-call.s3.UploadPart", after_call)
    size, digest = sha256_of(payload((limit + 3) * PART))
    stored = object_store.put_stream(
        "s/bounded", source(), content_type="video/webm", part_size=PART, concurrency=limit
    )
    assert max(ahead) == (limit + 1) * PART  # reached, never exceeded
    assert peak_calls == limit
    assert completed == limit + 3
    assert (stored.size, stored.sha256) == (size, digest)
    assert stored_sha256(object_store, stored.key) == digest


def test_failing_part_aborts_after_the_parts_in_flight(
    s3_settings: Settings, s3_backend: S3Backend, boto_session: boto3.session.Session
) -> None:
    """Part 2 is refused while parts 1 and 3 are on the wire: they are waited for, then the
    upload is aborted; nothing is left and the source is not read to the end."""
    client = make_s3_client(s3_settings.storage, max_attempts=1, session=boto_session)
    store = S3ObjectStore(s3_settings.storage, client=client, tracker=RecordingTracker())
    lock = threading.Lock()
    log: list[str] = []
    on_wire: set[int] = set()
    all_on_wire = threading.Event()
    refused = threading.Event()
    aborting = threading.Event()

    def before_send(request: Any, **_: Any) -> AWSResponse | None:
        number = part_number(request)
        with lock:
            on_wire.add(number)
            if on_wire >= {1, 2, 3}:
                all_on_wire.set()
        assert all_on_wire.wait(STUCK_S), "parts 1-3 never in flight together"
        if number == 2:
            refused.set()
            return error_response(request, 403, "AccessDenied")
        assert refused.wait(STUCK_S)
        # A store that aborts without waiting for the parts in flight would do it now.
        aborting.wait(0.5)
        return None

    def part_done(http_response: Any, context: Any, **_: Any) -> None:
        with lock:
            log.append(f"part{http_response.status_code}")

    def abort_called(**_: Any) -> None:
        aborting.set()
        with lock:
            log.append("abort")

    closed: list[int] = []

    def source() -> Iterator[bytes]:
        read = 0
        try:
            for chunk in payload(10 * PART):
                yield chunk
                read += len(chunk)
        finally:
            closed.append(read)

    events = store.client.meta.events
    events.register("before-send.s3.UploadPart", before_send)
    events.register("after-call.s3.UploadPart", part_done)
    events.register("before-call.s3.AbortMultipartUpload", abort_called)
    ops = record_operations(store)
    try:
        with pytest.raises(StorageError) as info:
            store.put_stream("s/refused", source(), content_type="video/webm", part_size=PART,
                             concurrency=3)  # fmt: skip
    finally:
        store.close()
    err = info.value
    assert (err.key, err.operation, err.code, err.retryable) == (
        "s/refused", "UploadPart", "AccessDenied", False
    )  # fmt: skip
    # The two good parts finished before the abort, which came last.
    assert sorted(log[:-1]) == ["part200", "part200", "part403"]
    assert log[-1] == "abort"
    assert "CompleteMultipartUpload" not in ops
    assert ops.count("UploadPart") <= 4  # parts 1-3, maybe 4: never the whole source
    assert len(closed) == 1
    assert closed[0] <= 5 * PART
    assert store.head("s/refused") is None
    assert open_uploads(store) == left_open(s3_backend, "s/refused")


def test_streamed_objects_are_checked_by_the_store_without_a_copy(
    object_store: S3ObjectStore,
) -> None:
    """More parts than fit in memory: no self-copy; the whole SHA-256 comes back to the caller,
    each part carries its own SHA-256 and the composite checksum is compared after completion
    where the store keeps one; ``head_verified`` reads the hash back for a later reuse."""
    total = 3 * PART + 123
    size, digest = sha256_of(payload(total))
    ops = record_operations(object_store)
    stored = object_store.put_stream("s/large", payload(total), content_type="video/webm",
                                     metadata={"transaction": "tx9"}, part_size=PART,
                                     concurrency=2)  # fmt: skip
    assert "CopyObject" not in ops
    assert "UploadPartCopy" not in ops
    assert ops.count("CompleteMultipartUpload") == 1
    assert (stored.size, stored.sha256) == (size, digest)
    assert stored.metadata == {"transaction": "tx9"}  # the hash is not written onto it
    assert stored_sha256(object_store, "s/large") == digest
    head = object_store.head("s/large")
    assert head is not None
    assert head.sha256 is None
    if head.checksum_sha256 is not None:  # a store that keeps checksums (AWS, MinIO, moto)
        assert stored.checksum_sha256 == head.checksum_sha256  # compared after completion
    verified = object_store.head_verified("s/large")
    assert verified is not None
    assert verified.sha256 == digest
    assert open_uploads(object_store) == []


def test_a_composite_checksum_that_differs_leaves_nothing(
    object_store: S3ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.storage import MultipartUpload

    probe = object_store.put_stream("s/probe", payload(3 * PART + 1), content_type="video/webm",
                                    part_size=PART, concurrency=2)  # fmt: skip
    if probe.checksum_sha256 is None:
        pytest.skip("this store keeps no checksums: size and the parts' own checks only")
    monkeypatch.setattr(MultipartUpload, "composite_checksum", lambda self: "AAAA-4")
    with pytest.raises(StorageError) as info:
        object_store.put_stream("s/bad-sum", payload(3 * PART + 5), content_type="video/webm",
                                part_size=PART, concurrency=2)  # fmt: skip
    assert (info.value.operation, info.value.code) == ("verify", "checksum_sha256 mismatch")
    assert object_store.head("s/bad-sum") is None


def test_a_store_refusing_part_checksums_gets_uploads_without_them(
    object_store: S3ObjectStore,
) -> None:
    def refuse(request: Any, **_: Any) -> AWSResponse | None:
        if "x-amz-checksum-algorithm" in {k.lower() for k in request.headers}:
            return error_response(request, 400, "InvalidArgument")
        return None

    object_store.client.meta.events.register("before-send.s3.CreateMultipartUpload", refuse)
    total = 3 * PART + 7
    size, digest = sha256_of(payload(total))
    stored = object_store.put_stream("s/plain", payload(total), content_type="video/webm",
                                     part_size=PART, concurrency=2)  # fmt: skip
    assert object_store.checksums is False
    assert (stored.size, stored.sha256) == (size, digest)
    assert stored_sha256(object_store, "s/plain") == digest


@pytest.mark.parametrize("extra", [0, 1], ids=["fits", "one-byte-more"])
def test_payload_fitting_in_memory_gets_its_sha256_up_front(
    object_store: S3ObjectStore, extra: int
) -> None:
    """Up to (concurrency + 1) parts the hash is known before the upload starts and goes in
    the metadata; one byte more and the upload streams (the hash stays with the caller)."""
    total = 3 * PART + extra
    size, digest = sha256_of(payload(total))
    ops = record_operations(object_store)

    def source() -> Iterator[bytes]:
        yield from payload(total)
        ops.append("(source read)")

    stored = object_store.put_stream(
        "s/held", source(), content_type="video/webm", part_size=PART, concurrency=2
    )
    assert "CopyObject" not in ops
    assert ops.count("UploadPart") == 3 + extra
    read_at = ops.index("(source read)")
    head = object_store.head("s/held")
    assert head is not None
    assert head.sha256 == (None if extra else digest)
    if extra:  # streamed: the upload started while the source was being read
        assert ops.index("CreateMultipartUpload") < read_at
    else:
        assert ops[read_at + 1] == "CreateMultipartUpload"
    assert (stored.size, stored.sha256) == (size, digest)
    assert stored_sha256(object_store, "s/held") == digest
    assert open_uploads(object_store) == []


def test_payload_of_exactly_one_part_is_one_put_object(object_store: S3ObjectStore) -> None:
    size, digest = sha256_of(payload(PART))
    ops = record_operations(object_store)
    stored = object_store.put_stream(
        "s/one-part", payload(PART), content_type="video/webm", part_size=PART
    )
    assert ops == ["PutObject", "HeadObject"]
    assert (stored.size, stored.sha256) == (size, digest)
