"""The emulator's own signature arithmetic against the official vectors of spec §11."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from worker.cloudauth import signing as client_signing
from worker.emulator.signing import (
    acs3_expected_signature,
    canonical_header_block,
    canonical_query_string,
    hex_sha256,
    read_acs3_authorization,
    rfc3986,
    rpc_expected_signature,
)

EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
V1_HEADERS = [
    ("host", "ecs.cn-shanghai.aliyuncs.com"),
    ("x-acs-action", "RunInstances"),
    ("x-acs-version", "2014-05-26"),
    ("x-acs-date", "2023-10-26T10:22:32Z"),
    ("x-acs-signature-nonce", "3156853299f313e23d1673dc12e1703d"),
    ("x-acs-content-sha256", EMPTY),
]


def test_v1_official_acs3_vector() -> None:
    query = [
        ("RegionId", "cn-shanghai"),
        ("ImageId", "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd"),
    ]
    signature = acs3_expected_signature(
        "YourAccessKeySecret",
        method="POST",
        path="/",
        query=query,
        headers=V1_HEADERS,
        declared=[name for name, _ in V1_HEADERS],
        payload_hash=EMPTY,
    )
    assert signature == "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"


def test_v4_doc_ocr_vector_with_a_body() -> None:
    body = b"IdOcrPictureBase64=%2F9j%2F4AAQSkZJRgABAQAASxxxxxxx%2B%2F%3D"
    payload_hash = hex_sha256(body)
    assert payload_hash == "b88f548052711cf9767d9863f5a53eb637b1b667d97b29d3193a631ce27d1da8"
    headers = [
        ("content-type", "application/x-www-form-urlencoded"),
        *(h for h in V1_HEADERS if h[0] != "x-acs-content-sha256"),
        ("x-acs-content-sha256", payload_hash),
    ]
    headers = [(n, "DocOcrV2" if n == "x-acs-action" else v) for n, v in headers]
    headers = [(n, "2022-08-09" if n == "x-acs-version" else v) for n, v in headers]
    headers = [
        (n, "cloudauth-intl.cn-hongkong.aliyuncs.com" if n == "host" else v) for n, v in headers
    ]
    signature = acs3_expected_signature(
        "YourAccessKeySecret",
        method="POST",
        path="/",
        query=[],
        headers=headers,
        declared=[name for name, _ in headers],
        payload_hash=payload_hash,
    )
    assert len(signature) == 64
    # Same arithmetic, independently written, as the client's signer.
    canonical = client_signing.acs3_canonical_request(
        "POST", "/", [], headers, [n for n, _ in headers], payload_hash
    )
    assert signature == client_signing.acs3_signature("YourAccessKeySecret", canonical)


def test_v2_official_rpc_vectors() -> None:
    params = [
        ("AccessKeyId", "testid"),
        ("Action", "DescribeRegions"),
        ("Format", "XML"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
        ("SignatureVersion", "1.0"),
        ("Timestamp", "2016-02-23T12:46:24Z"),
        ("Version", "2014-05-26"),
    ]
    assert rpc_expected_signature("testsecret", "GET", params) == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
    assert rpc_expected_signature("testsecret", "POST", params) == "MxbnVAM4w6sft9xjVpe/GCKueuk="
    # The Signature parameter itself is never signed.
    with_signature = [*params, ("Signature", "anything")]
    assert rpc_expected_signature("testsecret", "GET", with_signature) == (
        "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
    )


def test_encoding_rules() -> None:
    assert rfc3986("a b+c*d~e/é") == "a%20b%2Bc%2Ad~e%2F%C3%A9"
    assert canonical_query_string([("b", ""), ("a", "x y"), ("A", "1")]) == "A=1&a=x%20y&b="
    block, signed = canonical_header_block(
        [("X-Acs-B", " 2 "), ("x-acs-a", "1"), ("x-acs-b", "1"), ("other", "z")],
        ["x-acs-a", "X-ACS-B"],
    )
    assert (block, signed) == ("x-acs-a:1\nx-acs-b:1,2\n", "x-acs-a;x-acs-b")


def test_authorization_header_parsing() -> None:
    parsed = read_acs3_authorization(
        "ACS3-HMAC-SHA256 Credential=ak,SignedHeaders=host;x-acs-date,Signature=ab12"
    )
    assert parsed is not None
    assert (parsed.access_key_id, parsed.signed_headers, parsed.signature) == (
        "ak",
        ("host", "x-acs-date"),
        "ab12",
    )
    for bad in (
        "HMAC Credential=ak,SignedHeaders=host,Signature=x",
        "ACS3-HMAC-SHA256 Credential=ak,SignedHeaders=host",
        "ACS3-HMAC-SHA256 Credential=ak,SignedHeaders",
        "ACS3-HMAC-SHA256",
    ):
        assert read_acs3_authorization(bad) is None


@given(st.text(max_size=40))
def test_encoding_agrees_with_the_client(text: str) -> None:
    assert rfc3986(text) == client_signing.percent_encode(text)
