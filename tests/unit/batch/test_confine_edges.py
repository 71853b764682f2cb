"""Edges of source confinement the mutation tier found untested: default ports, prefixes
without a path, a bad prefix, the size limit's exact boundary, a missing file, descriptors
closed, host resolution, and the closed defaults of a bare policy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from worker.batch import ImageRejected, SourcePolicy, SourceRefused, UrlPrefix, resolve_host
from worker.cloudauth.params import MAX_IMAGE_BYTES
from worker.keys import ObjectKeys
from worker.settings import load_settings


def _resolve(host: str, _port: int) -> list[str]:
    return {"img.example": ["93.184.216.34"], "lan.example": ["10.0.0.5"]}.get(host, [host])


def _policy(*prefixes: str) -> SourcePolicy:
    return SourcePolicy(prefixes=tuple(UrlPrefix.parse(p) for p in prefixes), resolver=_resolve)


@pytest.mark.parametrize(
    ("prefix", "url", "covered"),
    [
        ("https://img.example/", "https://img.example:443/a.jpg", True),
        ("http://img.example/", "http://img.example:80/a.jpg", True),
        ("https://img.example:443/", "https://img.example/a.jpg", True),
        ("https://img.example/", "https://img.example:444/a.jpg", False),
        ("http://img.example/", "http://img.example:81/a.jpg", False),
        ("http://img.example/", "https://img.example/a.jpg", False),
        # a prefix without a path covers the whole host; a URL without a path is "/"
        ("https://img.example", "https://img.example/any/a.jpg", True),
        ("https://img.example/", "https://img.example", True),
        ("https://img.example/docs/", "https://img.example", False),
    ],
)
def test_default_ports_and_empty_paths(prefix: str, url: str, covered: bool) -> None:
    refusal = _policy(prefix).refusal(url)
    assert (refusal is None) is covered, refusal


def test_a_prefix_with_a_dot_segment_is_refused_at_parse() -> None:
    for bad in ("https://img.example/docs/%2e%2e/", "https://img.example/a/../b/"):
        with pytest.raises(ValueError, match="dot segment"):
            UrlPrefix.parse(bad)
    assert UrlPrefix.parse("https://IMG.example/Docs/").host == "img.example"


def test_the_size_limit_is_exact(tmp_path: Path) -> None:
    policy = SourcePolicy()
    (tmp_path / "max.jpg").write_bytes(b"\xff" * MAX_IMAGE_BYTES)
    (tmp_path / "over.jpg").write_bytes(b"\xff" * (MAX_IMAGE_BYTES + 1))
    data = policy.read_file(str(tmp_path / "max.jpg"), str(tmp_path))
    assert data == b"\xff" * MAX_IMAGE_BYTES
    with pytest.raises(ImageRejected) as caught:
        policy.read_file(str(tmp_path / "over.jpg"), str(tmp_path))
    assert caught.value.code == "ImageTooLarge"


def test_a_missing_file_under_the_root_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(ImageRejected) as caught:
        SourcePolicy().read_file(str(tmp_path / "gone.jpg"), str(tmp_path))
    assert caught.value.code == "ImageNotFound"
    assert not isinstance(caught.value, SourceRefused)  # a missing file is not a refusal


def test_reading_closes_every_descriptor(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8" * 100)
    (tmp_path / "big.jpg").write_bytes(b"\xff" * (MAX_IMAGE_BYTES + 1))
    policy = SourcePolicy()
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        assert policy.read_file(str(tmp_path / "a.jpg"), str(tmp_path)) == b"\xff\xd8" * 100
        with pytest.raises(ImageRejected):
            policy.read_file(str(tmp_path / "big.jpg"), str(tmp_path))
    assert len(os.listdir("/proc/self/fd")) == before


def test_resolve_host_answers_literals_and_refuses_what_cannot_resolve() -> None:
    assert resolve_host("127.0.0.1", 80) == ["127.0.0.1"]
    assert resolve_host("::1", 443) == ["::1"]
    with pytest.raises(SourceRefused) as caught:
        resolve_host("bad..host", 443)  # an empty label: refused before any DNS query
    assert caught.value.code == "SourceUnresolvable"


def test_a_bare_policy_is_closed() -> None:
    policy = SourcePolicy(prefixes=(UrlPrefix.parse("https://lan.example/"),), resolver=_resolve)
    with pytest.raises(SourceRefused) as caught:
        policy.check_url("https://lan.example/a.jpg")
    assert caught.value.code == "SourcePrivateAddress"
    bare = SourcePolicy(own_bucket="own", buckets=frozenset({"own"}))
    assert bare.refusal("s3://own/imports/a.jpg") is None
    assert bare.refusal("s3://own/other/a.jpg") is not None
    assert bare.resolver is resolve_host


def test_the_built_policy_uses_the_given_resolver_else_the_system_one() -> None:
    settings = load_settings(s3_bucket="own-bucket")
    keys = ObjectKeys(settings.storage.s3_prefix)
    built = SourcePolicy.from_settings(settings.sources, own_bucket="own-bucket", object_keys=keys)
    assert built.resolver is resolve_host
    assert built.timeout_s == settings.sources.batch_source_timeout_s
    given = SourcePolicy.from_settings(
        settings.sources, own_bucket="own-bucket", object_keys=keys, resolver=_resolve
    )
    assert given.resolver is _resolve


def test_the_own_bucket_never_reads_what_the_worker_writes_even_under_the_import_prefix() -> None:
    policy = SourcePolicy(
        own_bucket="own",
        buckets=frozenset({"own"}),
        import_prefix="idv/",
        written_prefixes=("idv/evidence/", "idv/results/"),
    )
    assert policy.refusal("s3://own/idv/imports/a.jpg") is None
    for key in ("idv/evidence/tx/id-front.jpg", "idv/results/tx.json"):
        refusal = policy.refusal(f"s3://own/{key}")
        assert refusal is not None
        assert refusal.code == "SourceKeyNotAllowed"


def test_a_bad_port_is_a_malformed_url() -> None:
    policy = _policy("https://img.example/")
    for url in ("https://img.example:99999/a.jpg", "https://img.example:x/a.jpg"):
        refusal = policy.refusal(url)
        assert refusal is not None
        assert refusal.code == "SourceNotAllowed"
        with pytest.raises(SourceRefused):
            policy.check_url(url)


def test_the_resolver_is_asked_for_the_port_and_an_empty_answer_is_refused() -> None:
    asked: list[tuple[str, int]] = []

    def resolver(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return [] if host == "void.example" else ["93.184.216.34"]

    policy = SourcePolicy(
        prefixes=tuple(
            UrlPrefix.parse(p)
            for p in ("https://img.example/", "http://img.example:8080/", "https://void.example/")
        ),
        resolver=resolver,
    )
    policy.check_url("https://img.example/a.jpg")
    policy.check_url("http://img.example:8080/a.jpg")
    with pytest.raises(SourceRefused) as caught:
        policy.check_url("https://void.example/a.jpg")
    assert caught.value.code == "SourceUnresolvable"
    assert asked == [("img.example", 443), ("img.example", 8080), ("void.example", 443)]


@pytest.mark.parametrize(
    ("url", "pinned", "host_header", "sni"),
    [
        ("https://img.example/a.jpg", "https://93.184.216.34/a.jpg", "img.example", "img.example"),
        ("http://img.example:8080", "http://93.184.216.34:8080/", "img.example:8080", None),
        (
            "https://[2606:4700::1111]/a.jpg?v=1",
            "https://[2606:4700::1111]/a.jpg?v=1",
            "[2606:4700::1111]",
            "2606:4700::1111",
        ),
        (
            "http://[2606:4700::1111]:8080/a.jpg",
            "http://[2606:4700::1111]:8080/a.jpg",
            "[2606:4700::1111]:8080",
            None,
        ),
    ],
)
def test_the_target_is_pinned_and_keeps_the_host(
    url: str, pinned: str, host_header: str, sni: str | None
) -> None:
    policy = _policy(
        "https://img.example/",
        "http://img.example:8080/",
        "https://[2606:4700::1111]/",
        "http://[2606:4700::1111]:8080/",
    )
    target = policy.check_url(url)
    assert (target.url, target.host_header, target.sni_hostname) == (pinned, host_header, sni)
