"""Image checks before a billed call, and reading images from files and http(s)."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from PIL import Image

from worker.batch import (
    ImageReader,
    ImageRejected,
    ImageSource,
    SourcePolicy,
    SourceUnavailable,
    UrlPrefix,
    check_image,
)

PUBLIC = "93.184.216.34"


def _policy(root: Path | None = None) -> SourcePolicy:
    return SourcePolicy(
        root=str(root) if root else None,
        prefixes=(UrlPrefix.parse("https://h/"),),
        resolver=lambda _host, _port: [PUBLIC],
    )


def _image(fmt: str, size: tuple[int, int] = (640, 400), **save: object) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (120, 130, 140)).save(out, fmt, **save)
    return out.getvalue()


def test_good_jpeg_and_png_pass() -> None:
    assert check_image(_image("JPEG")).format == "jpeg"
    assert check_image(_image("PNG")).format == "png"
    assert check_image(_image("PNG", (200, 8192))).height == 8192


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "ImageEmpty"),
        (b"GIF89a" + b"\0" * 100, "ImageFormat"),
        (b"not an image at all", "ImageFormat"),
        (_image("GIF"), "ImageFormat"),
        (_image("JPEG", (199, 400)), "ImageDimensions"),
        (_image("PNG", (640, 8193)), "ImageDimensions"),
        (_image("JPEG")[:-400], "ImageUnreadable"),
        (_image("PNG")[:-30], "ImageUnreadable"),
        (b"\xff\xd8\xff" + b"\0" * (1024 * 1024), "ImageTooLarge"),
    ],
)
def test_unfit_images_are_rejected_with_a_code(data: bytes, code: str) -> None:
    with pytest.raises(ImageRejected) as caught:
        check_image(data)
    assert caught.value.code == code
    assert caught.value.reason


def test_format_is_judged_by_content_not_name(tmp_path: Path) -> None:
    path = tmp_path / "really-a-png.jpg"
    path.write_bytes(_image("PNG"))
    data = ImageReader(policy=_policy(tmp_path)).read(ImageSource("file", path=str(path)))
    assert check_image(data).format == "png"


def test_file_errors(tmp_path: Path) -> None:
    reader = ImageReader(policy=_policy(tmp_path))
    with pytest.raises(ImageRejected, match="does not exist"):
        reader.read(ImageSource("file", path=str(tmp_path / "missing.jpg")))
    with pytest.raises(ImageRejected, match="directory"):
        reader.read(ImageSource("file", path=str(tmp_path)))
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff" * (3 * 1024 * 1024))
    # Judged by its size before a byte is read.
    with pytest.raises(ImageRejected, match="exceeds"):
        reader.read(ImageSource("file", path=str(big)))


def test_http_sources() -> None:
    jpeg = _image("JPEG")

    def handler(request: httpx.Request) -> httpx.Response:
        # The connection goes to the address that was checked; the host travels in the header.
        assert request.url.host == PUBLIC
        assert request.headers["host"] == "h"
        if request.url.path == "/ok.jpg":
            return httpx.Response(200, content=jpeg)
        if request.url.path == "/busy.jpg":
            return httpx.Response(503)
        if request.url.path == "/huge.jpg":
            return httpx.Response(200, headers={"content-length": str(5 * 1024 * 1024)})
        return httpx.Response(404)

    reader = ImageReader(
        policy=_policy(), http=httpx.Client(transport=httpx.MockTransport(handler))
    )
    assert reader.read(ImageSource("http", url="https://h/ok.jpg?sig=x")) == jpeg
    with pytest.raises(SourceUnavailable):
        reader.read(ImageSource("http", url="https://h/busy.jpg"))
    with pytest.raises(ImageRejected) as caught:
        reader.read(ImageSource("http", url="https://h/gone.jpg?sig=secret"))
    assert "secret" not in str(caught.value)
    with pytest.raises(ImageRejected, match="exceeds"):
        reader.read(ImageSource("http", url="https://h/huge.jpg"))


def test_http_transport_failures_are_transient() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    reader = ImageReader(
        policy=_policy(), http=httpx.Client(transport=httpx.MockTransport(handler))
    )
    with pytest.raises(SourceUnavailable):
        reader.read(ImageSource("http", url="https://h/a.jpg"))
