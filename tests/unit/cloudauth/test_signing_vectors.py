"""The official signature vectors of spec §11."""

from worker.cloudauth.signing import (
    EMPTY_SHA256,
    acs3_canonical_request,
    acs3_signature,
    rpc_signature,
)


def test_acs3_official_vector() -> None:
    headers = {
        "host": "ecs.cn-shanghai.aliyuncs.com",
        "x-acs-action": "RunInstances",
        "x-acs-version": "2014-05-26",
        "x-acs-date": "2023-10-26T10:22:32Z",
        "x-acs-signature-nonce": "3156853299f313e23d1673dc12e1703d",
        "x-acs-content-sha256": EMPTY_SHA256,
    }
    query = [
        ("ImageId", "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd"),
        ("RegionId", "cn-shanghai"),
    ]
    canonical = acs3_canonical_request("POST", "/", query, headers, list(headers), EMPTY_SHA256)
    assert acs3_signature("YourAccessKeySecret", canonical) == (
        "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
    )


def test_rpc_official_vectors() -> None:
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
    assert rpc_signature("testsecret", "GET", params) == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
    assert rpc_signature("testsecret", "POST", params) == "MxbnVAM4w6sft9xjVpe/GCKueuk="
