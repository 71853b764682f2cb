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
    RowError,
    SourcePolicy,
    SourceRefused,
    UrlPrefix,
    is_public,
    parse_source,
)
from worker.keys import ObjectKeys
from worker.settings import Settings, SettingsError, load_settings

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


def _from_settings(settings: Settings) -> SourcePolicy:
    """The policy as the builder makes it (``worker.wiring.services.source_policy``)."""
    return SourcePolicy.from_settings(
        settings.sources,
        own_bucket=settings.storage.s3_bucket,
        object_keys=ObjectKeys(settings.storage.s3_prefix),
    )


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
    policy = _from_settings(load_settings(s3_bucket="own-bucket"))
    assert policy.prefixes == ()
    assert policy.buckets == frozenset({"own-bucket"})
    assert not policy.allow_private
    with pytest.raises(SourceRefused):
        policy.check_url("https://img.example/docs/a.jpg")
    policy.check_object("own-bucket", "imports/a.jpg")
    with pytest.raises(SourceRefused):
        policy.check_object("other-bucket", "imports/a.jpg")


# The worker's own bucket holds everyone's evidence and results: only its import folder is a
# source, with plain keys, and never what the worker writes (IDV_S3_PREFIX respected).
OWN_KEYS_REFUSED = [
    ("someone's stored ID card", "evidence/2026/05/01/hk0123/id-front.jpg"),
    ("a result document", "results/2026/05/01/hk0123.json"),
    ("a batch document", "batches/b1/items/i1.json"),
    ("the encryption probe", "_idv/probe/x"),
    ("outside every folder", "a.jpg"),
    ("dot-dot out of the imports", "imports/../evidence/2026/05/01/hk0123/id-front.jpg"),
    ("a dot segment", "imports/./a.jpg"),
    ("the folder name without a slash", "imports"),
    ("the folder itself", "imports/"),
    ("a folder that only starts alike", "importsX/a.jpg"),
    ("a sibling folder", "imports-old/a.jpg"),
    ("percent-encoded slash", "imports%2F..%2Fevidence/a.jpg"),
    ("percent-encoded dots", "imports/%2e%2e/evidence/a.jpg"),
    ("a double slash", "imports//a.jpg"),
    ("a leading slash", "/imports/a.jpg"),
    ("a backslash", "imports/..\\evidence/a.jpg"),
    ("a control character", "imports/a\x00.jpg"),
    ("a trailing slash", "imports/sub/"),
]


@pytest.mark.parametrize(("case", "key"), OWN_KEYS_REFUSED, ids=[c[0] for c in OWN_KEYS_REFUSED])
def test_the_own_bucket_is_read_only_under_the_import_prefix(case: str, key: str) -> None:
    policy = _from_settings(load_settings(s3_bucket="own-bucket"))
    with pytest.raises(SourceRefused) as caught:
        policy.check_object("own-bucket", key)
    assert caught.value.code == "SourceKeyNotAllowed", case
    assert "evidence" not in str(caught.value)
    # Refused at submission too, before the row's source is stored (or invalid as a row).
    refusal = policy.refusal(f"s3://own-bucket/{key}")
    if refusal is None:
        with pytest.raises(RowError):
            parse_source(f"s3://own-bucket/{key}")
    else:
        assert refusal.code == "SourceKeyNotAllowed", case


@pytest.mark.parametrize(
    "key", ["imports/a.jpg", "imports/2026/batch-7/a b.jpg", "imports/evidence/a.jpg", "imports/.a"]
)
def test_plain_keys_under_the_import_prefix_are_read(key: str) -> None:
    policy = _from_settings(load_settings(s3_bucket="own-bucket"))
    policy.check_object("own-bucket", key)
    assert policy.refusal(f"s3://own-bucket/{key}") is None


def test_the_import_prefix_respects_the_s3_prefix_and_its_setting() -> None:
    settings = load_settings(
        s3_bucket="own-bucket", s3_prefix="tenant-a", batch_import_prefix="/in/scans"
    )
    policy = _from_settings(settings)
    policy.check_object("own-bucket", "in/scans/a.jpg")
    for key in ("imports/a.jpg", "in/a.jpg", "tenant-a/evidence/2026/05/01/t/face.jpg"):
        with pytest.raises(SourceRefused):
            policy.check_object("own-bucket", key)
    # Written keys stay refused even under an import prefix that would contain them.
    inside = SourcePolicy(
        buckets=frozenset({"b"}),
        own_bucket="b",
        import_prefix="up/",
        written_prefixes=("up/evidence/",),
    )
    inside.check_object("b", "up/a.jpg")
    with pytest.raises(SourceRefused):
        inside.check_object("b", "up/evidence/t/face.jpg")


def test_other_allowed_buckets_are_read_anywhere_and_the_own_one_stays_confined() -> None:
    settings = load_settings(s3_bucket="own-bucket", batch_allowed_buckets="partner,own-bucket")
    policy = _from_settings(settings)
    policy.check_object("partner", "evidence/any/key.jpg")
    policy.check_object("partner", "a.jpg")
    with pytest.raises(SourceRefused):
        policy.check_object("own-bucket", "evidence/2026/05/01/t/id-front.jpg")
    only_partner = _from_settings(
        load_settings(s3_bucket="own-bucket", batch_allowed_buckets="partner")
    )
    with pytest.raises(SourceRefused) as caught:
        only_partner.check_object("own-bucket", "imports/a.jpg")
    assert caught.value.code == "SourceBucketNotAllowed"


@pytest.mark.parametrize(
    ("prefix", "s3_prefix"),
    [
        ("evidence/", ""),
        ("evidence/2026", ""),
        ("results", ""),
        ("batches/", ""),
        ("_idv", ""),
        ("tenant/", "tenant"),  # would contain tenant/evidence/
        ("imports/../evidence", ""),
        ("imports/%2e%2e", ""),
        ("imports\\x", ""),
        ("/", ""),
    ],
)
def test_settings_refuse_an_import_prefix_over_written_keys(prefix: str, s3_prefix: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(batch_import_prefix=prefix, s3_prefix=s3_prefix)
    assert "IDV_BATCH_IMPORT_PREFIX" in str(caught.value)


def test_settings_accept_an_import_prefix_beside_written_keys() -> None:
    assert load_settings().sources.batch_import_prefix == "imports/"
    beside = load_settings(batch_import_prefix="evidence-in")
    assert beside.sources.batch_import_prefix == "evidence-in/"
    under_tenant = load_settings(s3_prefix="t", batch_import_prefix="imports")
    assert under_tenant.sources.batch_import_prefix == "imports/"


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
        # IPv6 forms that carry a private IPv4 address, and their public neighbours
        ("::127.0.0.1", False),
        ("::10.0.0.1", False),
        ("::169.254.169.254", False),
        ("::93.184.216.34", True),
        ("::ffff:10.0.0.1", False),
        ("::ffff:93.184.216.34", True),
        ("::ffff:0:127.0.0.1", False),
        ("::ffff:0:93.184.216.34", True),
        ("64:ff9b::127.0.0.1", False),
        ("64:ff9b::10.0.0.1", False),
        ("64:ff9b::169.254.169.254", False),
        ("64:ff9b::93.184.216.34", True),
        ("64:ff9b:1::93.184.216.34", False),  # local-use NAT64
        ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1
        ("2002:a00:1::1", False),  # 6to4 of 10.0.0.1
        ("2002:c0a8:101::1", False),  # 6to4 of 192.168.1.1
        ("2002:5db8:d822::1", True),  # 6to4 of 93.184.216.34
        ("fec0::1", False),
        ("feff:ffff::1", False),
        ("2001:4860:4860::8888", True),
        ("[::1]", False),
        ("not an address", False),
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public(address) is public


def test_an_embedded_private_address_is_refused_as_a_url() -> None:
    policy = SourcePolicy(prefixes=(UrlPrefix.parse("http://[64:ff9b::a00:1]/"),))
    with pytest.raises(SourceRefused) as caught:
        policy.check_url("http://[64:ff9b::a00:1]/a.jpg")
    assert caught.value.code == "SourcePrivateAddress"
    public = SourcePolicy(prefixes=(UrlPrefix.parse("http://[64:ff9b::5db8:d822]/"),))
    assert public.check_url("http://[64:ff9b::5db8:d822]/a.jpg").sni_hostname is None


PREFIX_TRICKS = [
    ("encoded dot-dot", "https://img.example/docs/%2e%2e/admin"),
    ("encoded dot-dot, upper case", "https://img.example/docs/%2E%2E/admin"),
    ("half-encoded dot-dot", "https://img.example/docs/.%2e/admin"),
    ("dot-dot with a parameter", "https://img.example/docs/..;/admin"),
    ("dot-dot with a named parameter", "https://img.example/docs/..;x=1/admin"),
    ("dot-dot with a backslash", "https://img.example/docs/..\\admin"),
    ("encoded backslash", "https://img.example/docs/..%5cadmin"),
    ("encoded slash", "https://img.example/docs%2f..%2fadmin"),
    ("encoded slash into the prefix", "https://img.example/other%2f..%2fdocs/a.jpg"),
    ("double-encoded dot-dot", "https://img.example/docs/%252e%252e/admin"),
    ("dot segment", "https://img.example/docs/./a.jpg"),
    ("trailing dot-dot", "https://img.example/docs/.."),
    ("dots and spaces", "https://img.example/docs/.%20./admin"),
    ("encoded NUL", "https://img.example/docs/a%00.jpg"),
]


@pytest.mark.parametrize(("case", "url"), PREFIX_TRICKS, ids=[c[0] for c in PREFIX_TRICKS])
def test_prefixes_are_compared_on_the_decoded_path(case: str, url: str) -> None:
    policy = SourcePolicy(
        prefixes=(UrlPrefix.parse("https://img.example/docs/"),), resolver=_resolve
    )
    with pytest.raises(SourceRefused) as caught:
        policy.check_url(url)
    assert caught.value.code == "SourceNotAllowed", case


@pytest.mark.parametrize(
    "url",
    [
        "https://img.example/docs/a.jpg",
        "https://img.example/docs/%61.jpg",  # an encoded letter is the same letter
        "https://img.example/%64ocs/a.jpg",
        "https://img.example/docs/a%20b.jpg",
        "https://img.example/docs/..a.jpg",  # dots inside a name are not a dot segment
        "https://img.example/docs/a;v=1.jpg",
    ],
)
def test_plain_paths_under_the_prefix_pass(url: str) -> None:
    policy = SourcePolicy(
        prefixes=(UrlPrefix.parse("https://img.example/docs/"),), resolver=_resolve
    )
    assert policy.check_url(url).url.startswith("https://93.184.216.34/")


@pytest.mark.parametrize(
    ("url", "covered"),
    [
        ("https://img.example/docs", True),
        ("https://img.example/docs/", True),
        ("https://img.example/docs/x.jpg", True),
        ("https://img.example/docs/sub/x.jpg", True),
        ("https://img.example/docs-private/x.jpg", False),
        ("https://img.example/docs-private", False),
        ("https://img.example/docsx", False),
        ("https://img.example/doc", False),
        ("https://img.example/docs%2fx.jpg", False),
        ("https://img.example/", False),
    ],
)
def test_a_prefix_without_a_trailing_slash_covers_only_its_folder(url: str, covered: bool) -> None:
    policy = SourcePolicy(
        prefixes=(UrlPrefix.parse("https://img.example/docs"),), resolver=_resolve
    )
    assert policy.refusal(url) is None if covered else policy.refusal(url) is not None


def test_a_sibling_of_the_root_is_outside_it(tmp_path: Path, root: Path) -> None:
    sibling = tmp_path / "root-evil"
    sibling.mkdir()
    (sibling / "x.jpg").write_bytes(_jpeg())
    (tmp_path / "rootx.jpg").write_bytes(_jpeg())
    reader = _reader(root, _handler)
    for path in (sibling / "x.jpg", tmp_path / "rootx.jpg"):
        with pytest.raises(SourceRefused) as caught:
            reader.read(ImageSource("file", path=str(path)), base_dir=str(root))
        assert caught.value.code == "SourceOutsideRoot"
    # The root given with a trailing slash is the same root.
    assert (
        _reader(Path(f"{root}/"), _handler).read(ImageSource("file", path=str(root / "ok.jpg")))
        == _jpeg()
    )


def test_settings_refuse_bad_prefixes_and_buckets() -> None:
    from worker.settings import SettingsError

    for bad in (
        "ftp://h/",
        "https://",
        "https://u:p@h/",
        "https://h/?q=1",
        "https://h/docs/../",
        "https://h/docs%2f",
        "https://h/a\\b/",
    ):
        with pytest.raises(SettingsError):
            load_settings(batch_allowed_url_prefixes=bad)
    with pytest.raises(SettingsError):
        load_settings(batch_allowed_buckets="Not_A_Bucket")


def test_image_rejected_is_the_base_of_refusals() -> None:
    assert issubclass(SourceRefused, ImageRejected)
