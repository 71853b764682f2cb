"""Manifest sources are confined: every way out of the root, the allowed URL prefixes, public
addresses and the allowed buckets is refused with its own code and a reason that never
repeats the source; the allowed cases still read."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from PIL import Image

from worker.batch import (
    ImageReader,
    ImageRejected,
    ImageSource,
    SourcePolicy,
    SourceRefused,
    UrlPrefix,
    is_public,
    parse_source,
)
from worker.settings import load_settings

DNS = {
    "img.example": ["93.184.216.34"],
    "internal.example": ["10.0.0.5"],
    "mixed.example": ["93.184.216.34", "192.168.1.9"],
    "metadata.example": ["169.254.169.254"],
    "evil.example": ["198.51.100.7"],
}


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (320, 240), (1, 2, 3)).save(out, "JPEG")
    return out.getvalue()


def _resolve(host: str, _port: int) -> list[str]:
    return DNS.get(host, [host])


def _reader(root: Path, handler: Callable[[httpx.Request], httpx.Response]) -> ImageReader:
    policy = SourcePolicy(
        root=str(root),
        prefixes=tuple(
            UrlPrefix.parse(p)
            for p in (
                "https://img.example/docs/",
                "https://internal.example/",
                "https://mixed.example/",
                "http://metadata.example/",
                "http://127.0.0.1:8080/",
                "http://[::1]:8080/",
            )
        ),
        buckets=frozenset({"ours"}),
        resolver=_resolve,
    )
    return ImageReader(policy=policy, http=httpx.Client(transport=httpx.MockTransport(handler)))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    inside = tmp_path / "root"
    (inside / "sub").mkdir(parents=True)
    (inside / "ok.jpg").write_bytes(_jpeg())
    (inside / "sub" / "ok.jpg").write_bytes(_jpeg())
    (tmp_path / "secret.jpg").write_bytes(_jpeg())
    os.symlink(tmp_path / "secret.jpg", inside / "link-out.jpg")
    os.symlink(inside / "ok.jpg", inside / "link-in.jpg")
    os.symlink("/dev/zero", inside / "zero.jpg")
    os.mkfifo(inside / "fifo.jpg")
    return inside


def _handler(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    if path == "/docs/ok.jpg":
        return httpx.Response(200, content=_jpeg())
    if path == "/docs/hop":
        return httpx.Response(302, headers={"location": "/docs/ok.jpg"})
    if path == "/docs/away":
        return httpx.Response(302, headers={"location": "https://evil.example/x.jpg?sig=S3CR3T"})
    if path == "/docs/up":
        return httpx.Response(302, headers={"location": "https://img.example/other/x.jpg"})
    if path == "/docs/loop":
        return httpx.Response(302, headers={"location": "/docs/loop"})
    return httpx.Response(404)


REFUSED = [
    ("traversal", "file", "../secret.jpg", "SourceOutsideRoot"),
    ("traversal inside a path", "file", "sub/../../secret.jpg", "SourceOutsideRoot"),
    ("absolute path outside", "file", "/etc/passwd", "SourceOutsideRoot"),
    ("symlink out", "file", "link-out.jpg", "SourceOutsideRoot"),
    ("symlink to a device", "file", "zero.jpg", "SourceOutsideRoot"),
    ("FIFO", "file", "fifo.jpg", "SourceNotRegular"),
    ("directory", "file", "sub", "SourceNotRegular"),
    ("loopback URL", "http", "http://127.0.0.1:8080/a.jpg", "SourcePrivateAddress"),
    ("loopback IPv6 URL", "http", "http://[::1]:8080/a.jpg", "SourcePrivateAddress"),
    ("private URL", "http", "https://internal.example/a.jpg", "SourcePrivateAddress"),
    ("one private address", "http", "https://mixed.example/a.jpg", "SourcePrivateAddress"),
    ("link-local URL", "http", "http://metadata.example/latest", "SourcePrivateAddress"),
    ("URL outside the prefixes", "http", "https://evil.example/docs/a.jpg", "SourceNotAllowed"),
    ("host that only starts alike", "http", "https://img.example.evil/docs/a", "SourceNotAllowed"),
    ("path outside the prefix", "http", "https://img.example/other/a.jpg", "SourceNotAllowed"),
    ("dot segments", "http", "https://img.example/docs/../admin", "SourceNotAllowed"),
    ("credentials in the URL", "http", "https://u:p@img.example/docs/a", "SourceNotAllowed"),
    ("other port", "http", "https://img.example:8443/docs/a.jpg", "SourceNotAllowed"),
    ("redirect to elsewhere", "http", "https://img.example/docs/away", "SourceNotAllowed"),
    ("redirect out of the path", "http", "https://img.example/docs/up", "SourceNotAllowed"),
    ("redirect loop", "http", "https://img.example/docs/loop", "SourceRedirect"),
    ("foreign bucket", "s3", "s3://their-bucket/a.jpg", "SourceBucketNotAllowed"),
]


@pytest.mark.parametrize(("case", "kind", "raw", "code"), REFUSED, ids=[r[0] for r in REFUSED])
def test_sources_outside_the_policy_are_refused(
    root: Path, case: str, kind: str, raw: str, code: str
) -> None:
    source = parse_source(raw, str(root))
    assert source.kind == kind
    with pytest.raises(SourceRefused) as caught:
        _reader(root, _handler).read(source, base_dir=str(root))
    assert caught.value.code == code, case
    assert caught.value.reason
    for part in ("secret", "S3CR3T", "passwd", "127.0.0.1", "their-bucket", "evil"):
        assert part not in str(caught.value), case


def test_a_device_inside_the_root_is_refused_without_blocking() -> None:
    reader = _reader(Path("/dev"), _handler)
    with pytest.raises(SourceRefused) as caught:
        reader.read(ImageSource("file", path="/dev/zero"), base_dir="/dev")
    assert caught.value.code == "SourceNotRegular"


ALLOWED = [
    ("relative file", "ok.jpg"),
    ("file in a folder", "sub/ok.jpg"),
    ("absolute path inside", "{root}/ok.jpg"),
    ("symlink inside the root", "link-in.jpg"),
    ("allowed URL", "https://img.example/docs/ok.jpg?sig=1"),
    ("redirect inside the prefix", "https://img.example/docs/hop"),
]


@pytest.mark.parametrize(("case", "raw"), ALLOWED, ids=[a[0] for a in ALLOWED])
def test_allowed_sources_still_read(root: Path, case: str, raw: str) -> None:
    source = parse_source(raw.format(root=root), str(root))
    assert _reader(root, _handler).read(source, base_dir=str(root)) == _jpeg(), case


def test_the_manifest_folder_is_the_default_root(tmp_path: Path, root: Path) -> None:
    reader = ImageReader(policy=SourcePolicy())
    assert reader.read(ImageSource("file", path=str(root / "ok.jpg")), base_dir=str(root))
    with pytest.raises(SourceRefused):
        reader.read(ImageSource("file", path=str(tmp_path / "secret.jpg")), base_dir=str(root))
    with pytest.raises(SourceRefused):  # no manifest folder, no root: no local files
        reader.read(ImageSource("file", path=str(root / "ok.jpg")))


def test_private_addresses_pass_when_allowed(root: Path) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.url.host}|{request.headers['host']}")
        return httpx.Response(200, content=_jpeg())

    policy = SourcePolicy(
        prefixes=(UrlPrefix.parse("https://internal.example/"),),
        allow_private=True,
        resolver=_resolve,
    )
    reader = ImageReader(policy=policy, http=httpx.Client(transport=httpx.MockTransport(handler)))
    assert reader.read(ImageSource("http", url="https://internal.example/a.jpg")) == _jpeg()
    assert seen == ["10.0.0.5|internal.example"]  # pinned to the address that was checked


def test_defaults_refuse_urls_and_foreign_buckets() -> None:
    policy = SourcePolicy.from_settings(
        load_settings(s3_bucket="own-bucket").sources, own_bucket="own-bucket"
    )
    assert policy.prefixes == ()
    assert policy.buckets == frozenset({"own-bucket"})
    assert not policy.allow_private
    with pytest.raises(SourceRefused):
        policy.check_url("https://img.example/docs/a.jpg")
    policy.check_bucket("own-bucket")
    with pytest.raises(SourceRefused):
        policy.check_bucket("other-bucket")


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.0.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
        ("2606:4700::1111", True),
        ("224.0.0.1", False),
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public(address) is public


def test_settings_refuse_bad_prefixes_and_buckets() -> None:
    from worker.settings import SettingsError

    for bad in ("ftp://h/", "https://", "https://u:p@h/", "https://h/?q=1"):
        with pytest.raises(SettingsError):
            load_settings(batch_allowed_url_prefixes=bad)
    with pytest.raises(SettingsError):
        load_settings(batch_allowed_buckets="Not_A_Bucket")


def test_image_rejected_is_the_base_of_refusals() -> None:
    assert issubclass(SourceRefused, ImageRejected)
