"""Where the security suite looks for markers: every Redis value, S3 object, log line, Sentry
event and metric line a run produced."""

from __future__ import annotations

import gzip
import re
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import redis

from worker.storage import S3ObjectStore

# A presigned link that survived redaction: its signature or its whole evidence path.
LINK_PATTERNS = (
    re.compile(r"Signature=(?!<redacted>|\*\*\*)[A-Za-z0-9%+/=_-]{6,}"),
    re.compile(r"/evidence/[A-Za-z0-9_.-]+\.webm\?"),
)


@dataclass(frozen=True)
class Finding:
    """One marker found: where (place and name), which marker, a short context."""

    place: str
    where: str
    marker: str
    context: str


def _variants(data: bytes) -> Iterator[bytes]:
    """The bytes as stored and, when they are compressed, decompressed (chunk blobs)."""
    yield data
    for unpack in (zlib.decompress, gzip.decompress):
        try:
            yield unpack(data)
        except (zlib.error, OSError, EOFError):
            continue


def find(
    place: str, where: str, data: bytes | str, markers: Iterable[str], *, links: bool = True
) -> list[Finding]:
    """The markers (and, with ``links``, presigned links) in ``data``."""
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
    found: list[Finding] = []
    for variant in _variants(raw):
        text = variant.decode("utf-8", "replace")
        for marker in markers:
            at = text.find(marker)
            if at >= 0:
                found.append(Finding(place, where, marker, text[max(0, at - 60) : at + 60]))
        if links:
            for pattern in LINK_PATTERNS:
                match = pattern.search(text)
                if match:
                    context = text[max(0, match.start() - 60) : match.end() + 20]
                    found.append(Finding(place, where, pattern.pattern, context))
    return found


def redis_values(client: redis.Redis) -> Iterator[tuple[str, bytes]]:
    """``(key, value)`` for every key of every type (SCAN; streams and hashes field by field)."""
    for raw_key in client.scan_iter(count=1000):
        key = raw_key.decode("utf-8", "replace")
        kind = client.type(raw_key).decode()
        yield key, raw_key
        if kind == "string":
            yield key, client.get(raw_key) or b""
        elif kind == "hash":
            for name, value in client.hgetall(raw_key).items():
                yield key, name
                yield key, value  # alone: a compressed value must stay decompressible
        elif kind == "list":
            for value in client.lrange(raw_key, 0, -1):
                yield key, value
        elif kind == "set":
            for value in client.smembers(raw_key):
                yield key, value
        elif kind == "zset":
            for value in client.zrange(raw_key, 0, -1):
                yield key, value
        elif kind == "stream":
            for entry_id, fields in client.xrange(raw_key, "-", "+"):
                joined = b"&".join(k + b"=" + v for k, v in fields.items())
                yield key, entry_id + b" " + joined


def scan_redis(client: redis.Redis, markers: Iterable[str], *, skip: str = "") -> list[Finding]:
    found: list[Finding] = []
    for key, value in redis_values(client):
        if skip and key == skip:
            continue
        found += find("redis", key, value, markers)
    return found


def scan_s3(store: S3ObjectStore, markers: Iterable[str]) -> list[Finding]:
    """Keys and bodies of every object (personal data may be there, encrypted; ids may not
    stay after an erasure)."""
    found: list[Finding] = []
    pages = store.client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket)
    for page in pages:
        for item in page.get("Contents", []):
            key = item["Key"]
            found += find("s3-key", key, key, markers, links=False)
            body = store.get_bytes(key, max_size=64 * 1024 * 1024)
            found += find("s3", key, body, markers, links=False)
    return found


@dataclass
class SentrySink:
    """A local Sentry ingestion endpoint: keeps every envelope workers and tools send."""

    envelopes: list[bytes] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def start(self) -> str:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.headers.get("content-encoding", "") == "gzip":
                    body = gzip.decompress(body)
                sink.envelopes.append(body)
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://public@127.0.0.1:{self.server.server_address[1]}/1"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
