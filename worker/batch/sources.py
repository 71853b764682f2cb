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

Where a source may be read from at all (root, URL prefixes, buckets, public addresses, regular
files, time) is ``worker.batch.confine``; a source outside it is ``SourceRefused`` (invalid).

Reasons never contain the source itself: an URL may carry a presigned token.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import httpx
from botocore.exceptions import BotoCoreError, ClientError
from PIL import Image, UnidentifiedImageError

from worker.batch.confine import SourcePolicy, SourceRefused, Target
from worker.batch.inflate import read_limited
from worker.batch.readerrors import ImageRejected as ImageRejected
from worker.batch.readerrors import SourceUnavailable as SourceUnavailable
from worker.batch.rows import ImageSource
from worker.cloudauth.images import ImageInfo, ImageInfoError, image_info
from worker.cloudauth.params import MAX_IMAGE_BYTES, MAX_IMAGE_SIDE, MIN_IMAGE_SIDE

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_S3_GONE_CODES = frozenset(
    {"NoSuchKey", "NoSuchBucket", "404", "403", "AccessDenied", "InvalidObjectState"}
)
_HTTP_RETRYABLE = frozenset({408, 425, 429})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 3


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
    """Fetches image bytes within ``policy`` (at most 1 MB + 1 byte from any source).

    ``s3_client`` builds the boto3 client on first use (the store's credentials; only
    allowed buckets are read); ``http`` is the client for http(s) sources (built lazily
    otherwise; it must not follow redirects: they are followed here, each one checked).
    """

    def __init__(
        self,
        *,
        policy: SourcePolicy | None = None,
        s3_client: Callable[[], S3Client] | None = None,
        http: httpx.Client | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.policy = policy or SourcePolicy()
        self._s3_factory = s3_client
        self._s3: S3Client | None = None
        self._http = http
        self._own_http = http is None
        self._timeout = min(timeout, self.policy.timeout_s)

    def close(self) -> None:
        """Close the HTTP client if this reader built it."""
        if self._http is not None and self._own_http:
            self._http.close()
            self._http = None

    def read(self, source: ImageSource, *, base_dir: str | None = None) -> bytes:
        """The image's bytes; ``ImageRejected`` (``SourceRefused`` outside the policy) or
        ``SourceUnavailable`` on failure. ``base_dir``: the manifest's folder."""
        if source.kind == "file":
            return self.policy.read_file(source.path, self.policy.root_for(base_dir))
        if source.kind == "s3":
            self.policy.check_object(source.bucket, source.key)
            return self._read_s3(source.bucket, source.key)
        return self._read_http(source.url)

    def _client_s3(self) -> S3Client:
        if self._s3 is None:
            if self._s3_factory is None:
                raise ImageRejected("SourceUnsupported", "no S3 client is configured")
            self._s3 = self._s3_factory()
        return self._s3

    def _read_s3(self, bucket: str, key: str) -> bytes:
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
            self._http = httpx.Client(timeout=httpx.Timeout(self._timeout), follow_redirects=False)
            self._own_http = True
        return self._http

    def _read_http(self, url: str) -> bytes:
        deadline = time.monotonic() + self.policy.timeout_s
        for _hop in range(_MAX_REDIRECTS + 1):
            target = self.policy.check_url(url)
            left = deadline - time.monotonic()
            if left <= 0:
                raise SourceUnavailable("SourceTimeout", "image download took too long")
            try:
                location = self._get(target, deadline, left)
            except httpx.HTTPError as exc:
                raise SourceUnavailable(type(exc).__name__, "image download failed") from None
            if isinstance(location, bytes):
                return location
            url = urljoin(url, location)  # checked like the first URL on the next turn
        raise SourceRefused("SourceRedirect", "the image URL redirects too many times")

    def _get(self, target: Target, deadline: float, left: float) -> bytes | str:
        """The body, or the next URL of a redirect."""
        extensions: dict[str, Any] = {"timeout": httpx.Timeout(min(self._timeout, left)).as_dict()}
        if target.sni_hostname:
            extensions["sni_hostname"] = target.sni_hostname
        request = self._client_http().build_request(
            "GET",
            target.url,
            # Images gain nothing from compression; a server that compresses anyway is read
            # through ``read_limited``, which bounds what it inflates.
            headers={"host": target.host_header, "accept-encoding": "identity"},
            extensions=extensions,
        )
        resp = self._client_http().send(request, stream=True, follow_redirects=False)
        try:
            status = resp.status_code
            if status in _REDIRECTS:
                location = resp.headers.get("location")
                if not location:
                    raise ImageRejected("ImageNotFound", f"image download answered HTTP {status}")
                return str(location)
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
            return read_limited(resp, MAX_IMAGE_BYTES, deadline)  # decoded bytes counted
        finally:
            resp.close()
