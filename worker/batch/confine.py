"""Where a manifest's images may be read from (DESIGN §5, "Inputs are confined").

A manifest is input from outside: a row could name ``/etc/shadow``, a FIFO that blocks a
worker, ``http://169.254.169.254/`` (cloud metadata) or another tenant's bucket. Every source
is checked here before a byte is read:

* **local paths** must resolve (symlinks and ``..`` followed) under the source root
  (``IDV_BATCH_SOURCE_ROOT``, default the manifest's folder) and be regular files; the file is
  opened with ``O_NONBLOCK | O_NOFOLLOW`` and checked again on the open descriptor, so a FIFO or
  a device never blocks and a path swapped after the check is noticed;
* **http(s)** URLs must start with one of ``IDV_BATCH_ALLOWED_URL_PREFIXES`` (scheme, host, port
  and path compared as parsed, so ``https://a.example`` does not cover
  ``https://a.example.evil.org``); the host is resolved and *every* address must be public
  unless ``IDV_BATCH_ALLOW_PRIVATE_URLS``; the connection goes to the address that was checked
  (TLS still verifies the host name), so a second DNS answer cannot point it elsewhere;
  redirects are followed only to URLs that pass the same checks;
* **s3://** buckets must be in ``IDV_BATCH_ALLOWED_BUCKETS`` (default: ``IDV_S3_BUCKET`` only).

Refusals are ``SourceRefused`` (an ``ImageRejected``: the row is invalid, with a code and a
reason that never repeats the source).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit, urlunsplit

from worker.batch.manifest import RowError, parse_source
from worker.batch.readerrors import ImageRejected
from worker.cloudauth.params import MAX_IMAGE_BYTES
from worker.settings import SourceSettings

Resolver = Callable[[str, int], Sequence[str]]
_DEFAULT_PORTS = {"http": 80, "https": 443}
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC


class SourceRefused(ImageRejected):
    """The source is outside what the configuration allows (the row is invalid)."""


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (IP literals resolve to themselves)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise SourceRefused("SourceUnresolvable", "the image URL's host does not resolve") from None
    seen: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in seen:
            seen.append(address)
    return seen


def is_public(address: str) -> bool:
    """Whether ``address`` is globally routable (not loopback, private, link-local...)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


@dataclass(frozen=True, slots=True)
class UrlPrefix:
    """One allowed prefix, parsed: scheme, host and port must be equal, path a prefix."""

    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, text: str) -> UrlPrefix:
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        return cls(
            scheme,
            (parts.hostname or "").lower(),
            parts.port or _DEFAULT_PORTS[scheme],
            parts.path or "/",
        )

    def covers(self, parts: SplitResult) -> bool:
        """Whether the parsed URL lies under this prefix."""
        scheme = parts.scheme.lower()
        if scheme != self.scheme or (parts.hostname or "").lower() != self.host:
            return False
        if (parts.port or _DEFAULT_PORTS.get(scheme)) != self.port:
            return False
        path = parts.path or "/"
        if "/../" in f"{path}/" or "/./" in f"{path}/":
            return False  # a dot segment could climb out of the prefix on the server
        if self.path.endswith("/"):
            return path.startswith(self.path)
        return path == self.path or path.startswith(self.path + "/")


@dataclass(frozen=True, slots=True)
class Target:
    """Where one checked request goes: the URL to connect to (host = the checked address)
    and the headers/extensions that keep the original host for HTTP and TLS."""

    url: str
    host_header: str
    sni_hostname: str | None


@dataclass(frozen=True)
class SourcePolicy:
    """The allowed places (see the module docstring); ``SourcePolicy.from_settings``."""

    root: str | None = None
    prefixes: tuple[UrlPrefix, ...] = ()
    allow_private: bool = False
    buckets: frozenset[str] = frozenset()
    timeout_s: float = 15.0
    resolver: Resolver = field(default=resolve_host, compare=False)

    @classmethod
    def from_settings(
        cls, settings: SourceSettings, *, own_bucket: str, resolver: Resolver | None = None
    ) -> SourcePolicy:
        """The policy of ``IDV_BATCH_*`` sources; ``own_bucket`` is the worker's bucket."""
        buckets = settings.batch_allowed_buckets or [own_bucket]
        return cls(
            root=settings.batch_source_root,
            prefixes=tuple(UrlPrefix.parse(p) for p in settings.batch_allowed_url_prefixes),
            allow_private=settings.batch_allow_private_urls,
            buckets=frozenset(buckets),
            timeout_s=settings.batch_source_timeout_s,
            resolver=resolver or resolve_host,
        )

    # ------------------------------------------------------------------ files

    def root_for(self, base_dir: str | None) -> str | None:
        """The root local sources must resolve under: the configured one, else ``base_dir``."""
        return self.root or base_dir

    def read_file(self, path: str, root: str | None) -> bytes:
        """The first ``MAX_IMAGE_BYTES + 1`` bytes of a regular file under ``root``."""
        if not root:
            raise SourceRefused("SourceOutsideRoot", "local image files are not allowed here")
        real_root = os.path.realpath(root)
        real = os.path.realpath(path)
        if real != real_root and not real.startswith(real_root.rstrip("/") + "/"):
            raise SourceRefused(
                "SourceOutsideRoot", "the image path resolves outside the source root"
            )
        try:
            before = os.stat(real)
        except (FileNotFoundError, NotADirectoryError):
            raise ImageRejected("ImageNotFound", "the image file does not exist") from None
        except PermissionError:
            raise ImageRejected(
                "ImageNotFound", "the image file is not readable (permission denied)"
            ) from None
        _require_regular(before)
        try:
            fd = os.open(real, _OPEN_FLAGS)
        except PermissionError:
            raise ImageRejected(
                "ImageNotFound", "the image file is not readable (permission denied)"
            ) from None
        except OSError:
            # ELOOP (swapped for a symlink), ENOENT (removed) since the check.
            raise SourceRefused(
                "SourceChanged", "the image path changed while it was being opened"
            ) from None
        try:
            after = os.fstat(fd)
            _require_regular(after)
            if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
                raise SourceRefused(
                    "SourceChanged", "the image path changed while it was being opened"
                )
            if after.st_size > MAX_IMAGE_BYTES:
                raise ImageRejected(
                    "ImageTooLarge", f"the image exceeds {MAX_IMAGE_BYTES} bytes (1 MB, seed 002)"
                )
            chunks: list[bytes] = []
            size = 0
            while size <= MAX_IMAGE_BYTES:
                block = os.read(fd, MAX_IMAGE_BYTES + 1 - size)
                if not block:
                    break
                chunks.append(block)
                size += len(block)
            return b"".join(chunks)
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ S3

    def check_bucket(self, bucket: str) -> None:
        """Refuse a bucket that is not allowed."""
        if bucket not in self.buckets:
            raise SourceRefused(
                "SourceBucketNotAllowed",
                "the S3 bucket is not an allowed source (IDV_BATCH_ALLOWED_BUCKETS)",
            )

    # ------------------------------------------------------------------ at submission

    def refusal(self, source: str) -> SourceRefused | None:
        """Why a row's source is refused before any I/O (URL prefix, bucket), if it is.

        Run when a manifest is submitted, so a refused row is stored without its source:
        a URL outside the prefixes may carry a presigned token that has no business in Redis.
        """
        try:
            parsed = parse_source(source)
            if parsed.kind == "http":
                self.check_prefix(parsed.url)
            elif parsed.kind == "s3":
                self.check_bucket(parsed.bucket)
        except SourceRefused as exc:
            return exc
        except RowError:
            return None  # reported by the row's own validation
        return None

    # ------------------------------------------------------------------ http(s)

    def check_prefix(self, url: str) -> SplitResult:
        """The parsed URL if it lies under an allowed prefix (no I/O)."""
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018  (raises on a bad port)
        except ValueError:
            raise SourceRefused("SourceNotAllowed", "the image URL is malformed") from None
        if not parts.hostname or parts.username is not None or parts.password is not None:
            raise SourceRefused("SourceNotAllowed", "the image URL has no host or has credentials")
        if not any(prefix.covers(parts) for prefix in self.prefixes):
            raise SourceRefused(
                "SourceNotAllowed",
                "the image URL is not under an allowed prefix (IDV_BATCH_ALLOWED_URL_PREFIXES)",
            )
        return parts

    def check_url(self, url: str) -> Target:
        """Check prefix and addresses of ``url``; the ``Target`` to connect to."""
        parts = self.check_prefix(url)
        host = parts.hostname or ""
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower(), 0)
        addresses = list(self.resolver(host, port))
        if not addresses:
            raise SourceRefused("SourceUnresolvable", "the image URL's host does not resolve")
        if not self.allow_private and not all(is_public(a) for a in addresses):
            raise SourceRefused(
                "SourcePrivateAddress",
                "the image URL's host resolves to a loopback, private or link-local address",
            )
        address = addresses[0]
        literal = f"[{address}]" if ":" in address else address
        netloc = literal if parts.port is None else f"{literal}:{parts.port}"
        pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        host_header = host if parts.port is None else f"{host}:{parts.port}"
        if ":" in host and parts.port is None:
            host_header = f"[{host}]"
        elif ":" in host:
            host_header = f"[{host}]:{parts.port}"
        sni = host if parts.scheme.lower() == "https" else None
        return Target(pinned, host_header, sni)


def _require_regular(info: os.stat_result) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise SourceRefused("SourceNotRegular", "the image path is a directory")
    if not stat.S_ISREG(info.st_mode):
        raise SourceRefused(
            "SourceNotRegular", "the image path is not a regular file (FIFO, device or socket)"
        )
