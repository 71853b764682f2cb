"""The evidence archiver's edge cases: the provider side is an ``httpx.MockTransport`` video
host (expiring links, breaks, servers that ignore Range), the store is the S3 API (moto)."""

from __future__ import annotations

import base64
import hashlib
import random
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import pytest

from tests.fixtures.servers import wait_until
from worker.evidence import BadEvidence, EvidenceArchiver, EvidenceLost, EvidenceUnavailable
from worker.keys import Evidence, ObjectKeys
from worker.settings import Settings
from worker.storage import S3ObjectStore, StorageError

MIB = 1024 * 1024
TID = "hk0badc0ffee0badc0ffee0badc0ffee"
WHEN = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


class _Broken(httpx.SyncByteStream):
    def __init__(self, data: bytes, cut: int) -> None:
        self.data, self.cut = data, cut

    def __iter__(self) -> Iterator[bytes]:
        for i in range(0, self.cut, 64 * 1024):
            yield self.data[i : min(i + 64 * 1024, self.cut)]
        raise httpx.ReadError("connection reset by peer")


class _Chunked(httpx.SyncByteStream):
    """A streamed body (``content=`` bytes would be read eagerly by httpx)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self) -> Iterator[bytes]:
        for i in range(0, len(self.data), 100_000):
            yield self.data[i : i + 100_000]


@dataclass
class VideoHost:
    """A presigned-link object store in miniature."""

    data: bytes
    valid: set[str] = field(default_factory=lambda: {"/v.webm?sig=1"})
    breaks: list[int] = field(default_factory=list)
    ignore_range: bool = False
    bad_range: bool = False
    chunked: bool = False
    requests: list[str] = field(default_factory=list)
    issued: int = 1

    def fresh_link(self) -> str:
        self.issued += 1
        path = f"/v.webm?sig={self.issued}"
        self.valid = {path}
        return "https://oss.example" + path

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode()
        self.requests.append(request.headers.get("range", "-"))
        if path not in self.valid:
            return httpx.Response(403, content=b"<Error><Code>AccessDenied</Code></Error>")
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", request.headers.get("range", ""))
        if match and not self.ignore_range:
            start = int(match.group(1))
        body = self.data[start:]
        headers = {"content-type": "video/webm"}
        status = 200
        if start:
            status = 206
            first = start + (1 if self.bad_range else 0)
            headers["content-range"] = f"bytes {first}-{len(self.data) - 1}/{len(self.data)}"
        if self.chunked:
            return httpx.Response(status, headers=headers, stream=_Chunked(body))
        headers["content-length"] = str(len(body))
        if self.breaks:
            return httpx.Response(status, headers=headers, stream=_Broken(body, self.breaks.pop(0)))
        return httpx.Response(status, headers=headers, stream=_Chunked(body))


@pytest.fixture
def store(s3_settings: Settings) -> Iterator[S3ObjectStore]:
    s = S3ObjectStore(s3_settings.storage)
    yield s
    s.close()


def archiver_for(
    store: S3ObjectStore, host: VideoHost, **kw: object
) -> tuple[EvidenceArchiver, httpx.Client]:
    http = httpx.Client(transport=httpx.MockTransport(host.handler))
    options: dict[str, object] = {"part_size": 5 * MIB, "chunk_size": 64 * 1024, **kw}
    return EvidenceArchiver(store, http, ObjectKeys(), **options), http  # type: ignore[arg-type]


def video(size: int) -> bytes:
    return random.Random(size).randbytes(size)


def key() -> str:
    return ObjectKeys().evidence(TID, WHEN, Evidence.VIDEO)


def no_uploads_left(store: S3ObjectStore) -> bool:
    return not store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads")


def test_resume_when_the_server_ignores_range(store: S3ObjectStore) -> None:
    data = video(7 * MIB)
    host = VideoHost(data, breaks=[2 * MIB], ignore_range=True)
    archiver, http = archiver_for(store, host)
    result = archiver.archive_video(TID, WHEN, "https://oss.example/v.webm?sig=1",
                                    host.fresh_link, deadline=None)  # fmt: skip
    http.close()
    assert result.stored.sha256 == hashlib.sha256(data).hexdigest()
    assert result.resumes == 1
    assert host.requests == ["-", f"bytes={2 * MIB}-"]


def test_expired_link_then_break_uses_fresh_links(store: S3ObjectStore) -> None:
    data = video(3 * MIB)
    host = VideoHost(data, valid=set(), breaks=[MIB, MIB])
    archiver, http = archiver_for(store, host)
    result = archiver.archive_video(TID, WHEN, "https://oss.example/v.webm?sig=1",
                                    host.fresh_link, deadline=None)  # fmt: skip
    http.close()
    assert result.stored.sha256 == hashlib.sha256(data).hexdigest()
    assert result.links_used == 2  # the dead one and one fresh
    assert host.requests == ["-", "-", f"bytes={MIB}-", f"bytes={2 * MIB}-"]


def test_unknown_length_is_streamed(store: S3ObjectStore) -> None:
    data = video(6 * MIB + 5)
    host = VideoHost(data, chunked=True)
    archiver, http = archiver_for(store, host)
    result = archiver.archive_video(TID, WHEN, "https://oss.example/v.webm?sig=1",
                                    host.fresh_link, deadline=None)  # fmt: skip
    http.close()
    assert result.stored.size == len(data)
    assert result.stored.sha256 == hashlib.sha256(data).hexdigest()


def test_inconsistent_range_is_bad_evidence_and_leaves_nothing(store: S3ObjectStore) -> None:
    host = VideoHost(video(7 * MIB), breaks=[6 * MIB], bad_range=True)
    archiver, http = archiver_for(store, host)
    with pytest.raises(BadEvidence, match="Content-Range"):
        archiver.archive_video(TID, WHEN, "https://oss.example/v.webm?sig=1",
                               host.fresh_link, deadline=None)  # fmt: skip
    http.close()
    assert store.head(key()) is None
    assert no_uploads_left(store)


def test_too_many_dead_links_is_evidence_lost(store: S3ObjectStore) -> None:
    host = VideoHost(video(1000), valid=set())
    host.fresh_link = lambda: "https://oss.example/never-valid"  # type: ignore[method-assign]
    archiver, http = archiver_for(store, host, max_links=3)
    with pytest.raises(EvidenceLost, match="3 links tried"):
        archiver.archive_video(TID, WHEN, "https://oss.example/v.webm?sig=1",
                               lambda: host.fresh_link(), deadline=None)  # fmt: skip
    http.close()
    assert len(host.requests) == 3


def test_transfers_breaking_on_every_link_are_retryable_not_lost(store: S3ObjectStore) -> None:
    data = video(2 * MIB)
    host = VideoHost(data, breaks=[0] * 100)
    pauses: list[float] = []
    archiver, http = archiver_for(store, host, max_links=2, sleep=pauses.append)
    with pytest.raises(EvidenceUnavailable, match="2 links tried"):
        archiver.archive_video(TID, WHEN, "https://oss.example/v.webm?sig=1",
                               host.fresh_link, deadline=None)  # fmt: skip
    http.close()
    # Jittered backoff between attempts on one link (each in [ceiling/2, ceiling]), none
    # before asking for a fresh one.
    ceilings = [0.2, 0.4, 0.2, 0.4]
    assert len(pauses) == len(ceilings)
    assert all(c / 2 <= p <= c for p, c in zip(pauses, ceilings, strict=True)), pauses
    assert store.head(key()) is None
    assert no_uploads_left(store)


def test_breaks_that_make_progress_keep_the_link(store: S3ObjectStore) -> None:
    data = video(2 * MIB)
    host = VideoHost(data, breaks=[256 * 1024] * 7)
    archiver, http = archiver_for(store, host, max_links=1, sleep=lambda s: None)
    result = archiver.archive_video(TID, WHEN, "https://oss.example/v.webm?sig=1",
                                    host.fresh_link, deadline=None)  # fmt: skip
    http.close()
    assert result.resumes == 7
    assert result.links_used == 1
    assert result.stored.sha256 == hashlib.sha256(data).hexdigest()


def test_past_deadline_or_no_link_is_evidence_lost(store: S3ObjectStore) -> None:
    host = VideoHost(video(1000), valid=set())
    archiver, http = archiver_for(store, host, clock=lambda: 2_000.0)
    with pytest.raises(EvidenceLost, match="deadline passed"):
        archiver.archive_video(TID, WHEN, "https://oss.example/v.webm?sig=1",
                               host.fresh_link, deadline=1_999.0)  # fmt: skip
    with pytest.raises(EvidenceLost, match="no link"):
        archiver.archive_video(TID, WHEN, None, lambda: None, deadline=None)
    http.close()
    assert store.head(key()) is None


def test_failing_heartbeat_aborts_the_upload_and_stops_the_reader(store: S3ObjectStore) -> None:
    class Lost(Exception):
        pass

    clock = iter(range(10_000))

    def heartbeat() -> None:
        raise Lost

    host = VideoHost(video(12 * MIB))
    archiver, http = archiver_for(store, host, clock=lambda: float(next(clock)),
                                  heartbeat_every_s=30)  # fmt: skip
    threads = threading.active_count()
    with pytest.raises(Lost):
        archiver.archive_video(TID, WHEN, "https://oss.example/v.webm?sig=1",
                               host.fresh_link, deadline=None, heartbeat=heartbeat)  # fmt: skip
    http.close()
    wait_until(lambda: threading.active_count() <= threads, timeout=5)
    assert store.head(key()) is None
    assert no_uploads_left(store)


def test_store_failure_stops_the_reader(s3_settings: Settings) -> None:
    broken = S3ObjectStore(s3_settings.replace(s3_bucket="no-such-bucket-here").storage)
    host = VideoHost(video(12 * MIB))
    archiver, http = archiver_for(broken, host)
    threads = threading.active_count()
    with pytest.raises(StorageError):
        archiver.archive_video(TID, WHEN, "https://oss.example/v.webm?sig=1",
                               host.fresh_link, deadline=None)  # fmt: skip
    http.close()
    broken.close()
    wait_until(lambda: threading.active_count() <= threads, timeout=5)


def _image(seed: int) -> bytes:
    return b"\xff\xd8\xff\xe0" + random.Random(seed).randbytes(4000) + b"\xff\xd9"


def _versions(store: S3ObjectStore, key: str) -> list[str]:
    listed = store.client.list_object_versions(Bucket=store.bucket, Prefix=key)
    return [v["VersionId"] for v in listed.get("Versions", []) if v["Key"] == key]


def test_a_stored_image_is_reused_only_with_an_equal_sha256(store: S3ObjectStore) -> None:
    # Versioning shows every write: a reuse adds no version, a rewrite adds one.
    store.client.put_bucket_versioning(
        Bucket=store.bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    try:
        _reuse_and_rewrite(store)
    finally:  # the bucket is removed after the test: its versions first
        listed = store.client.list_object_versions(Bucket=store.bucket)
        for v in listed.get("Versions", []) + listed.get("DeleteMarkers", []):
            store.client.delete_object(Bucket=store.bucket, Key=v["Key"], VersionId=v["VersionId"])


def _reuse_and_rewrite(store: S3ObjectStore) -> None:
    archiver, http = archiver_for(store, VideoHost(b""))
    first, same_size = _image(1), _image(2)
    assert len(first) == len(same_size)
    assert first != same_size
    name = Evidence.ID_FRONT
    image_key = ObjectKeys().evidence(TID, WHEN, name)
    with http:
        stored = archiver.store_image(TID, WHEN, name, base64.b64encode(first).decode())
        assert stored.sha256 == hashlib.sha256(first).hexdigest()
        # The same image again: the stored object is reused, nothing is written.
        again = archiver.store_image(TID, WHEN, name, base64.b64encode(first).decode())
        assert (again.sha256, again.size) == (stored.sha256, stored.size)
        assert len(_versions(store, image_key)) == 1
        # Another image of the very same size: written, never taken for the stored one.
        other = archiver.store_image(TID, WHEN, name, base64.b64encode(same_size).decode())
    assert other.sha256 == hashlib.sha256(same_size).hexdigest()
    assert other.size == stored.size
    assert len(_versions(store, image_key)) == 2
    assert store.get_bytes(image_key) == same_size
