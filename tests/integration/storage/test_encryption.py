"""Server-side encryption: the start-up probe and per-object verification, on every store.

moto applies and reports SSE; s3rver accepts it silently (never reports it); a store that
refuses it (MinIO without a KMS: 501 NotImplemented) is simulated at the client's edge.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from tests.fixtures.s3 import RecordingTracker, S3Backend, make_store, new_bucket_name
from tests.integration.storage.test_concurrency import error_response
from tests.integration.storage.test_store import PART, open_uploads, payload, record_operations
from worker.errors import ConfigurationError, is_retryable
from worker.storage import (
    EncryptionNotApplied,
    S3ObjectStore,
    SseOutcome,
    StoreMisconfigured,
    probe_encryption,
)


def objects_in(store: S3ObjectStore) -> list[str]:
    listing = store.client.list_objects_v2(Bucket=store.bucket)
    return [obj["Key"] for obj in listing.get("Contents", [])]


def store_for(
    backend: S3Backend, bucket: str, session: boto3.session.Session, **overrides: Any
) -> S3ObjectStore:
    return make_store(backend.settings(bucket, **overrides), session, tracker=RecordingTracker())


def refuse_sse(store: S3ObjectStore) -> None:
    """Make the store answer a write carrying SSE as MinIO without a KMS does (501)."""

    def refuse(request: Any, **_: Any) -> AWSResponse | None:
        if "x-amz-server-side-encryption" in request.headers:
            return error_response(request, 501, "NotImplemented")
        return None

    for op in ("PutObject", "CreateMultipartUpload"):
        store.client.meta.events.register(f"before-send.s3.{op}", refuse)


def test_probe_reports_what_the_store_does_with_sse(
    s3_backend: S3Backend, s3_bucket: str, boto_session: boto3.session.Session
) -> None:
    strict = store_for(s3_backend, s3_bucket, boto_session, s3_verify_sse="strict")
    reported = store_for(s3_backend, s3_bucket, boto_session, s3_verify_sse="reported")
    try:
        found = probe_encryption(strict)
        if s3_backend.echoes_sse:
            assert (found.outcome, found.ok, found.fix) == (SseOutcome.APPLIED, True, "")
        else:
            assert (found.outcome, found.ok) == (SseOutcome.SILENT, False)
            assert "IDV_S3_VERIFY_SSE=reported" in found.fix
            assert "IDV_S3_VERIFY_SSE" in found.line()
            assert "\n" not in found.line()
        assert probe_encryption(reported).ok
        assert objects_in(strict) == []  # the probe objects were deleted
    finally:
        strict.close()
        reported.close()


def test_probe_without_sse_and_without_a_bucket(
    s3_backend: S3Backend, s3_bucket: str, boto_session: boto3.session.Session
) -> None:
    plain = store_for(s3_backend, s3_bucket, boto_session, s3_sse="none")
    missing = store_for(s3_backend, new_bucket_name(), boto_session)
    try:
        assert probe_encryption(plain).outcome == SseOutcome.DISABLED
        assert probe_encryption(plain).ok
        failed = probe_encryption(missing)
        assert (failed.outcome, failed.ok, failed.code) == (
            SseOutcome.FAILED, False, "NoSuchBucket"
        )  # fmt: skip
        assert "ensure-bucket" in failed.fix
    finally:
        plain.close()
        missing.close()


def test_refused_sse_is_found_by_the_probe_and_stops_writes(
    s3_backend: S3Backend, s3_bucket: str, boto_session: boto3.session.Session
) -> None:
    store = store_for(s3_backend, s3_bucket, boto_session, s3_verify_sse="off")
    refuse_sse(store)
    try:
        found = probe_encryption(store)
        assert (found.outcome, found.ok, found.code) == (
            SseOutcome.REFUSED,
            False,
            "NotImplemented",
        )
        assert "KMS" in found.fix
        assert "IDV_S3_SSE=none" in found.fix
        assert objects_in(store) == []
        # At run time the same refusal is a configuration error, never retried.
        with pytest.raises(StoreMisconfigured) as info:
            store.put_bytes("r/x", b"v", content_type="text/plain")
        assert isinstance(info.value, ConfigurationError)
        assert not is_retryable(info.value)
        assert info.value.alert
        assert info.value.stops_lane
    finally:
        store.close()


def test_strict_mismatch_is_a_configuration_error_and_costs_one_download(
    s3_backend: S3Backend, s3_bucket: str, boto_session: boto3.session.Session
) -> None:
    store = store_for(s3_backend, s3_bucket, boto_session, s3_verify_sse="strict")

    def hide_sse(parsed: dict[str, Any], **_: Any) -> None:
        parsed.pop("ServerSideEncryption", None)  # a store that does not echo SSE

    store.client.meta.events.register("after-call.s3.HeadObject", hide_sse)
    reads: list[int] = []

    def source() -> Iterator[bytes]:
        reads.append(0)
        for chunk in payload(2 * PART + 3):
            reads[-1] += len(chunk)
            yield chunk

    try:
        with pytest.raises(EncryptionNotApplied) as info:
            store.put_stream("v/video.webm", source(), content_type="video/webm", part_size=PART)
        err = info.value
        assert (err.expected, err.actual, err.retryable) == ("AES256", None, False)
        assert err.alert
        assert err.stops_lane
        assert isinstance(err, ConfigurationError)
        assert "IDV_S3_VERIFY_SSE" in str(err)
        assert store.head("v/video.webm") is None
        assert open_uploads(store) == []
        # Every later write is refused at once: no byte of the next source is read.
        ops = record_operations(store)
        with pytest.raises(StoreMisconfigured) as again:
            store.put_stream("v/other.webm", source(), content_type="video/webm")
        assert "IDV_S3_VERIFY_SSE" in again.value.fix
        with pytest.raises(StoreMisconfigured):
            store.put_bytes("v/face.jpg", b"x", content_type="image/jpeg")
        assert ops == []
        assert len(reads) == 1
    finally:
        store.close()


@pytest.mark.parametrize("mode", ["reported", "off"])
def test_lenient_modes_accept_a_store_that_does_not_report_sse(
    s3_backend: S3Backend, s3_bucket: str, boto_session: boto3.session.Session, mode: str
) -> None:
    store = store_for(s3_backend, s3_bucket, boto_session, s3_verify_sse=mode)
    store.client.meta.events.register(
        "after-call.s3.HeadObject", lambda parsed, **_: parsed.pop("ServerSideEncryption", None)
    )
    try:
        assert store.put_bytes("k", b"v", content_type="text/plain").encryption is None
    finally:
        store.close()


def test_reported_mode_still_refuses_another_algorithm(
    s3_backend: S3Backend, s3_bucket: str, boto_session: boto3.session.Session
) -> None:
    store = store_for(s3_backend, s3_bucket, boto_session, s3_verify_sse="reported")
    store.client.meta.events.register(
        "after-call.s3.HeadObject",
        lambda parsed, **_: parsed.update(ServerSideEncryption="aws:kms"),
    )
    try:
        with pytest.raises(EncryptionNotApplied) as info:
            store.put_bytes("k", b"v", content_type="text/plain")
        assert info.value.actual == "aws:kms"
        assert "IDV_S3_SSE=aws:kms" in info.value.fix
    finally:
        store.close()
