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
  ``https://a.example.evil.org``, and ``https://a.example/docs`` covers ``/docs`` and
  ``/docs/x`` but not ``/docs-private``); paths are compared percent-decoded, and a path a
  server could read as climbing out (a dot segment in any spelling: ``..``, ``%2e%2e``,
  ``..;``; a backslash; an encoded slash or backslash; a double encoding) is refused rather than
  guessed at; the host is resolved and *every* address must be public unless
  ``IDV_BATCH_ALLOW_PRIVATE_URLS`` (an IPv6 address that embeds an IPv4 one - mapped,
  compatible, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16`` - is judged by the IPv4 address;
  site-local ``fec0::/10`` and local-use NAT64 ``64:ff9b:1::/48`` are private); the
  connection goes to the address that was checked (TLS still verifies the host name), so a
  second DNS answer cannot point it elsewhere; redirects are followed only to URLs that pass
  the same checks;
* **s3://** buckets must be in ``IDV_BATCH_ALLOWED_BUCKETS`` (default: ``IDV_S3_BUCKET`` only).
  The worker's own bucket (``IDV_S3_BUCKET``, listed or by default) is read only under
  ``IDV_BATCH_IMPORT_PREFIX`` (default ``imports/``), with plain keys (no ``.``/``..`` or empty
  segment, no ``%``, no backslash, no control character) and never under the folders the
  worker writes (``evidence/``, ``results/``, ``batches/``, ``_idv/`` below
  ``IDV_S3_PREFIX``): a manifest cannot read another person's stored evidence back.

Refusals are ``SourceRefused`` (an ``ImageRejected``: the row is invalid, with a code and a
reason that never repeats the source).
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from worker.batch.manifest import RowError, parse_source
from worker.batch.readerrors import ImageRejected
from worker.cloudauth.params import MAX_IMAGE_BYTES
from worker.keys import ObjectKeys
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


_V4_IN_LOW_BITS = tuple(
    ipaddress.IPv6Network(net)
    for net in (
        "::/96",  # IPv4-compatible (deprecated), also :: and ::1
        "::ffff:0:0:0/96",  # SIIT IPv4-translated
        "64:ff9b::/96",  # NAT64 well-known prefix
    )
)
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
_NEVER_PUBLIC_V6 = (
    ipaddress.IPv6Network("fec0::/10"),  # site-local (deprecated, still routed inside sites)
    ipaddress.IPv6Network("64:ff9b:1::/48"),  # local-use NAT64 (RFC 8215)
)


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, compatible, NAT64, 6to4)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _SIX_TO_FOUR:
        return ip.sixtofour
    if any(ip in net for net in _V4_IN_LOW_BITS):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(address: str) -> bool:
    """Whether ``address`` is globally routable (not loopback, private, link-local...); an
    IPv6 address that carries an IPv4 one is judged by the IPv4 address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if any(ip in net for net in _NEVER_PUBLIC_V6):
            return False
        v4 = _embedded_v4(ip)
        if v4 is not None:
            return v4.is_global and not v4.is_multicast
    return ip.is_global and not ip.is_multicast


_ENCODED_SEPARATOR = re.compile(r"%(?:2f|5c)", re.IGNORECASE)
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def decoded_path(path: str) -> str | None:
    """``path`` percent-decoded, or None where servers could read it differently: a dot
    segment in any spelling (``..``, ``%2e%2e``, ``..;x``, ``. .``), a backslash, an encoded
    slash or backslash, a double encoding or a control character."""
    if _ENCODED_SEPARATOR.search(path):
        return None
    decoded = unquote(path or "/")
    if "\\" in decoded or _PERCENT_ESCAPE.search(decoded) or _CONTROL.search(decoded):
        return None
    for segment in decoded.split("/"):
        if segment and not segment.split(";", 1)[0].strip(". "):
            return None
    return decoded


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
        path = decoded_path(parts.path or "/")
        if path is None:
            raise ValueError("an allowed URL prefix has a dot segment or an encoded separator")
        return cls(
            scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS[scheme], path
        )

    def covers(self, parts: SplitResult) -> bool:
        """Whether the parsed URL lies under this prefix."""
        scheme = parts.scheme.lower()
        if scheme != self.scheme or (parts.hostname or "").lower() != self.host:
            return False
        if (parts.port or _DEFAULT_PORTS.get(scheme)) != self.port:
            return False
        path = decoded_path(parts.path or "/")
        if path is None:
            return False  # the server's reading of the path is not ours to guess
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
    own_bucket: str | None = None
    import_prefix: str = "imports/"
    written_prefixes: tuple[str, ...] = ()
    timeout_s: float = 15.0
    resolver: Resolver = field(default=resolve_host, compare=False)

    @classmethod
    def from_settings(
        cls,
        settings: SourceSettings,
        *,
        own_bucket: str,
        object_keys: ObjectKeys,
        resolver: Resolver | None = None,
    ) -> SourcePolicy:
        """The policy of ``IDV_BATCH_*`` sources; ``own_bucket`` is the worker's bucket and
        ``object_keys`` names the folders the worker writes in it."""
        buckets = settings.batch_allowed_buckets or [own_bucket]
        return cls(
            root=settings.batch_source_root,
            prefixes=tuple(UrlPrefix.parse(p) for p in settings.batch_allowed_url_prefixes),
            allow_private=settings.batch_allow_private_urls,
            buckets=frozenset(buckets),
            own_bucket=own_bucket,
            import_prefix=settings.batch_import_prefix,
            written_prefixes=object_keys.written_folders,
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

    def check_object(self, bucket: str, key: str) -> None:
        """Refuse an object outside the allowed buckets, or outside the import folder of the
        worker's own bucket."""
        self.check_bucket(bucket)
        if bucket == self.own_bucket and not self._importable(key):
            raise SourceRefused(
                "SourceKeyNotAllowed",
                "the worker's own bucket is read only under its import folder "
                "(IDV_BATCH_IMPORT_PREFIX), with a plain key",
            )

    def _importable(self, key: str) -> bool:
        prefix = self.import_prefix
        if not prefix or not key.startswith(prefix) or len(key) == len(prefix):
            return False
        if "%" in key or "\\" in key or _CONTROL.search(key):
            return False
        if any(segment in ("", ".", "..") for segment in key.split("/")):
            return False  # also '//', a leading or a trailing '/'
        return not any(key.startswith(written) for written in self.written_prefixes)

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
                self.check_object(parsed.bucket, parsed.key)
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
