"""The 1 MB cap of an http(s) source counts decoded bytes: a compressed body that inflates past
it is refused without inflating (or reading) much more than the cap; compressed images under
it still read. A real HTTP server on loopback serves the bodies."""

from __future__ import annotations

import contextlib
import gzip
import http.server
import io
import threading
import tracemalloc
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from tests.fixtures.servers import free_port
from worker.batch import ImageReader, ImageRejected, ImageSource, SourcePolicy, UrlPrefix
from worker.batch.sources import check_image
from worker.cloudauth.params import MAX_IMAGE_BYTES


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (640, 480), (10, 20, 30)).save(out, "JPEG")
    return out.getvalue()


# ~130 KB of gzip that inflates to 128 MB (the probe of issue 18: 510 KB read as 33.7 MB).
BOMB = gzip.compress(bytes(128 * 1024 * 1024), compresslevel=9)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    image = _jpeg()
    deflated = zlib.compress(image)
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    raw_deflated = raw_deflate.compress(image) + raw_deflate.flush()
    bodies: dict[str, tuple[bytes, str]] = {
        "/bomb.jpg": (BOMB, "gzip"),
        "/image.jpg.gz": (gzip.compress(image), "gzip"),
        "/image.jpg.two-members": (
            gzip.compress(image[:1000]) + gzip.compress(image[1000:]),
            "gzip",
        ),
        "/image.jpg.deflate": (deflated, "deflate"),
        "/image.jpg.raw-deflate": (raw_deflated, "deflate"),
        "/image.jpg.br": (image, "br"),
        "/image.jpg.twice": (gzip.compress(gzip.compress(image)), "gzip, gzip"),
        "/image.jpg.corrupt": (b"\x1f\x8b\x08\x00garbage" * 100, "gzip"),
        "/image.jpg": (image, ""),
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body, encoding = bodies.get(self.path, (b"", ""))
            self.send_response(200 if body else 404)
            if encoding:
                self.send_header("content-encoding", encoding)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):  # the reader hung up: it had enough
                self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _reader(base: str) -> ImageReader:
    policy = SourcePolicy(prefixes=(UrlPrefix.parse(f"{base}/"),), allow_private=True)
    return ImageReader(policy=policy)


def test_a_gzip_bomb_is_refused_without_inflating_it(server: str) -> None:
    base = server
    assert len(BOMB) < MAX_IMAGE_BYTES // 4  # on the wire, well under the cap
    reader = _reader(base)
    try:
        tracemalloc.start()
        data = reader.read(ImageSource("http", url=f"{base}/bomb.jpg"))
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        reader.close()
    assert len(data) == MAX_IMAGE_BYTES + 1  # decoded bytes, cut one past the cap
    with pytest.raises(ImageRejected) as caught:
        check_image(data)
    assert caught.value.code == "ImageTooLarge"
    # Before: 33.7 MB inflated and held at once; now the cap plus a few buffers.
    assert peak < 4 * MAX_IMAGE_BYTES, f"{peak / 1e6:.1f} MB allocated while reading"


@pytest.mark.parametrize(
    "path",
    [
        "/image.jpg",
        "/image.jpg.gz",
        "/image.jpg.two-members",
        "/image.jpg.deflate",
        "/image.jpg.raw-deflate",
    ],
)
def test_compressed_images_under_the_cap_still_read(server: str, path: str) -> None:
    base = server
    reader = _reader(base)
    try:
        assert reader.read(ImageSource("http", url=f"{base}{path}")) == _jpeg()
    finally:
        reader.close()


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/image.jpg.br", "ImageEncoding"),
        ("/image.jpg.twice", "ImageEncoding"),
        ("/image.jpg.corrupt", "ImageUnreadable"),
    ],
)
def test_other_encodings_and_corrupt_bodies_are_refused(server: str, path: str, code: str) -> None:
    base = server
    reader = _reader(base)
    try:
        with pytest.raises(ImageRejected) as caught:
            reader.read(ImageSource("http", url=f"{base}{path}"))
    finally:
        reader.close()
    assert caught.value.code == code
