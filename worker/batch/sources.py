"""Read a row's image (local file, S3 object, http(s) URL) and check it before a billed call.

The checks are those of seed 002 plus readability: JPEG or PNG *by content* (never by file
name), at most 1 MB, each side 200-8192 px, and image data that actually decodes (a
truncated file passes a header check but the provider rejects it - after billing the call).
JPEGs are decoded at 1/8 scale, PNGs have every chunk's CRC checked; both take well under a
millisecond for a typical document photo.

Two outcomes besides the bytes:

* ``ImageRejected`` - the item is invalid (missing, unreadable, wrong format or size); it is
  reported with its reason and never sent.
* ``SourceUnavailable`` - the source failed in a way that may pass (S3 5xx, HTTP timeout or
  5xx); the item is tried again later.

Reasons never contain the source itself: an URL may carry a presigned token.
"""

from __future__ import annotations

import errno
import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
from PIL import Image, UnidentifiedImageError

from worker.batch.rows import ImageSource
from worker.cloudauth.images import ImageInfo, ImageInfoError, image_info
from worker.cloudauth.params import MAX_IMAGE_BYTES, MAX_IMAGE_SIDE, MIN_IMAGE_SIDE
from worker.errors import IdvError, InvalidInput

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_GONE_ERRNOS = frozenset({errno.ENOENT, errno.EACCES, errno.EISDIR, errno.ENOTDIR, errno.EPERM})
_S3_GONE_CODES = frozenset(
    {"NoSuchKey", "NoSuchBucket", "404", "403", "AccessDenied", "InvalidObjectState"}
)
_HTTP_RETRYABLE = frozenset({408, 425, 429})


class ImageRejected(InvalidInput):
    """The image cannot be sent: ``code`` (short, stable) and ``reason`` (for people)."""

    def __init__(self, code: str, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{code}: {reason}")


class SourceUnavailable(IdvError):
    """Reading the image failed in a way that may pass; try the item again later."""

    retryable = True

    def __init__(self, code: str, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{code}: {reason}")


def check_image(data: bytes) -> ImageInfo:
    """Format, size and readability of an image for DocOcrV2; ``ImageRejected`` if unfit."""
    if not data:
        raise ImageRejected("ImageEmpty", "the image is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageRejected(
            "ImageTooLarge", f"the image exceeds {MAX_IMAGE_BYTES} bytes (1 MB, seed 002)"
        )
    try:
        info = image_info(data)
    except ImageInfoError as exc:
        raise ImageRejected("ImageFormat", f"not a readable JPEG or PNG image ({exc})") from None
    for side in (info.width, info.height):
        if not MIN_IMAGE_SIDE <= side <= MAX_IMAGE_SIDE:
            raise ImageRejected(
                "ImageDimensions",
                f"the image is {info.width}x{info.height} px; each side must be "
                f"{MIN_IMAGE_SIDE}-{MAX_IMAGE_SIDE} px",
            )
    _check_decodes(data, info)
    return info


def _check_decodes(data: bytes, info: ImageInfo) -> None:
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG", "PNG"]) as img:
            if info.format == "jpeg":
                # DCT scaling: the whole entropy-coded stream is read, few pixels are made.
                img.draft("RGB", (max(1, info.width // 8), max(1, info.height // 8)))
                img.load()
            else:
                img.verify()
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError):
        raise ImageRejected("ImageUnreadable", "the image data is truncated or corrupt") from None


class ImageReader:
    """Fetches image bytes (at most 1 MB + 1 byte is ever read from any source).

    ``s3_client`` builds the boto3 client on first use (any bucket, the store's
    credentials); ``http`` is the client for http(s) sources (built lazily otherwise).
    """

    def __init__(
        self,
        *,
        s3_client: Callable[[], S3Client] | None = None,
        http: httpx.Client | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._s3_factory = s3_client
        self._s3: S3Client | None = None
        self._http = http
        self._own_http = http is None
        self._timeout = timeout

    def close(self) -> None:
        """Close the HTTP client if this reader built it."""
        if self._http is not None and self._own_http:
            self._http.close()
            self._http = None

    def read(self, source: ImageSource) -> bytes:
        """The image's bytes; ``ImageRejected`` or ``SourceUnavailable`` on failure."""
        if source.kind == "file":
            return self._read_file(source.path)
        if source.kind == "s3":
            return self._read_s3(source.bucket, source.key)
        return self._read_http(source.url)

    def _read_file(self, path: str) -> bytes:
        try:
            with open(path, "rb") as handle:
                return handle.read(MAX_IMAGE_BYTES + 1)
        except OSError as exc:
            if exc.errno in _GONE_ERRNOS:
                what = {
                    errno.ENOENT: "the image file does not exist",
                    errno.ENOTDIR: "the image file does not exist",
                    errno.EISDIR: "the image path is a directory",
                }.get(exc.errno or 0, "the image file is not readable (permission denied)")
                raise ImageRejected("ImageNotFound", what) from None
            raise SourceUnavailable(
                "FileError", f"reading the image failed ({exc.strerror})"
            ) from None

    def _client_s3(self) -> S3Client:
        if self._s3 is None:
            if self._s3_factory is None:
                raise ImageRejected("SourceUnsupported", "no S3 client is configured")
            self._s3 = self._s3_factory()
        return self._s3

    def _read_s3(self, bucket: str, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            resp: Any = self._client_s3().get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "")) or "S3Error"
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if code in _S3_GONE_CODES or status in (403, 404):
                raise ImageRejected(
                    "ImageNotFound", f"the S3 object cannot be read ({code})"
                ) from None
            raise SourceUnavailable(code[:64], "S3 read failed") from None
        except BotoCoreError as exc:
            raise SourceUnavailable(type(exc).__name__, "S3 read failed") from None
        body = resp["Body"]
        try:
            if int(resp.get("ContentLength") or 0) > MAX_IMAGE_BYTES:
                raise ImageRejected(
                    "ImageTooLarge", f"the image exceeds {MAX_IMAGE_BYTES} bytes (1 MB, seed 002)"
                )
            data: bytes = body.read(MAX_IMAGE_BYTES + 1)
            return data
        except (BotoCoreError, OSError) as exc:
            raise SourceUnavailable(type(exc).__name__, "S3 read failed") from None
        finally:
            body.close()

    def _client_http(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(
                timeout=httpx.Timeout(self._timeout), follow_redirects=True, max_redirects=5
            )
            self._own_http = True
        return self._http

    def _read_http(self, url: str) -> bytes:
        try:
            with self._client_http().stream("GET", url) as resp:
                status = resp.status_code
                if status >= 500 or status in _HTTP_RETRYABLE:
                    raise SourceUnavailable(f"HTTP{status}", f"image download answered {status}")
                if status != 200:
                    raise ImageRejected("ImageNotFound", f"image download answered HTTP {status}")
                length = resp.headers.get("content-length")
                if length is not None and length.isdigit() and int(length) > MAX_IMAGE_BYTES:
                    raise ImageRejected(
                        "ImageTooLarge",
                        f"the image exceeds {MAX_IMAGE_BYTES} bytes (1 MB, seed 002)",
                    )
                buf = bytearray()
                for part in resp.iter_bytes():
                    buf += part
                    if len(buf) > MAX_IMAGE_BYTES:
                        break
                return bytes(buf)
        except httpx.HTTPError as exc:
            raise SourceUnavailable(type(exc).__name__, "image download failed") from None
