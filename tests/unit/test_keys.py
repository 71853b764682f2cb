"""The key schema: exact names, and no id can escape its prefix."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.keys import (
    MAX_ID_LENGTH,
    Evidence,
    InvalidKeyError,
    ObjectKeys,
    RedisKeys,
    item_ref,
    normalize_prefix,
    validate_id,
    validate_object_key,
    validate_ref,
)
from worker.settings import load_settings

COMPLETED = datetime(2026, 3, 9, 23, 30, tzinfo=UTC)


def test_redis_keys() -> None:
    keys = RedisKeys(load_settings(namespace="idv:").redis.namespace)
    assert keys.result_tx("hksb7ba1b28130d24e015d6") == "idv:result:tx:hksb7ba1b28130d24e015d6"
    assert keys.result_item("batch-1", "row.42") == "idv:result:item:batch-1:row.42"
    assert keys.result("item", item_ref("b", "i")) == "idv:result:item:b:i"
    assert keys.results_stream == "idv:results"
    assert keys.deadletter("tx", "t1") == "idv:dlq:entry:tx:t1"
    assert keys.deadletter_index == "idv:dlq:index"
    assert keys.deadletter_kind_index("tx") == "idv:dlq:kind:tx"
    assert keys.lease("ocr", "b:i") == "idv:lease:ocr:b:i"
    assert RedisKeys("tenant-a:").result_tx("t1") == "tenant-a:result:tx:t1"


def test_object_keys() -> None:
    keys = ObjectKeys("")
    assert keys.evidence("t1", COMPLETED, Evidence.VIDEO) == "evidence/2026/03/09/t1/video.webm"
    assert keys.evidence("t1", COMPLETED, Evidence.FACE) == "evidence/2026/03/09/t1/face.jpg"
    assert keys.evidence("t1", COMPLETED, Evidence.ID_FRONT).endswith("/t1/id-front.jpg")
    assert keys.evidence("t1", COMPLETED, Evidence.ID_BACK).endswith("/t1/id-back.jpg")
    assert keys.evidence_prefix("t1", COMPLETED) == "evidence/2026/03/09/t1/"
    assert keys.result("t1", COMPLETED) == "results/2026/03/09/t1.json"
    assert keys.batch_results("batch-7") == "batches/batch-7/results.jsonl"


def test_object_keys_use_the_prefix_from_settings() -> None:
    keys = ObjectKeys(load_settings(s3_prefix="/prod/idv").storage.s3_prefix)
    assert keys.prefix == "prod/idv/"
    assert keys.result("t1", COMPLETED) == "prod/idv/results/2026/03/09/t1.json"
    assert normalize_prefix("") == ""
    assert normalize_prefix("a/") == "a/"
    with pytest.raises(InvalidKeyError):
        ObjectKeys("a/../b")


def test_the_date_is_the_utc_completion_day() -> None:
    keys = ObjectKeys("")
    # 07:30 on the 10th in UTC+8 is still the 9th in UTC.
    local = datetime(2026, 3, 10, 7, 30, tzinfo=timezone(timedelta(hours=8)))
    assert keys.result("t1", local) == "results/2026/03/09/t1.json"
    with pytest.raises(ValueError, match="timezone-aware"):
        keys.result("t1", datetime(2026, 3, 9, 12, 0))  # a naive time is the point


@pytest.mark.parametrize(
    "bad",
    ["", ".", "..", "../x", "a/b", "a\\b", "a..b", ".hidden", "a b", "a:b", "a\x00", "é", "a%2F"],
)
def test_hostile_ids_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidKeyError) as info:
        validate_id(bad, "transaction_id")
    assert info.value.field == "transaction_id"
    with pytest.raises(InvalidKeyError):
        ObjectKeys("").evidence(bad, COMPLETED, Evidence.VIDEO)
    with pytest.raises(InvalidKeyError):
        RedisKeys().result_tx(bad)


def test_errors_do_not_repeat_the_untrusted_value() -> None:
    with pytest.raises(InvalidKeyError) as info:
        validate_id("<script>alert(1)</script>", "transactionId")
    assert "script" not in str(info.value)
    assert info.value.reason


def test_length_limit() -> None:
    assert validate_id("a" * MAX_ID_LENGTH) == "a" * MAX_ID_LENGTH
    with pytest.raises(InvalidKeyError, match="longer"):
        validate_id("a" * (MAX_ID_LENGTH + 1))


def test_refs_and_kinds() -> None:
    assert validate_ref("b1:i1") == "b1:i1"
    for bad_ref in ["b1:", ":i1", "a:b:c:d:e", "b1:../i"]:
        with pytest.raises(InvalidKeyError):
            validate_ref(bad_ref)
    for bad_kind in ["", "TX", "t x", "t:x", "1tx", "x" * 40]:
        with pytest.raises(InvalidKeyError, match="kind"):
            RedisKeys().result(bad_kind, "t1")
    with pytest.raises(InvalidKeyError):
        item_ref("b1", "i1:i2")


@pytest.mark.parametrize("bad", ["", "/abs", "a//b", "a/./b", "a/../b", "..", "a\\b", "a\tb"])
def test_object_key_validation(bad: str) -> None:
    with pytest.raises(InvalidKeyError):
        validate_object_key(bad)


def test_object_key_length_is_in_bytes() -> None:
    assert validate_object_key("a/" + "x" * 1000)
    with pytest.raises(InvalidKeyError, match="1024 bytes"):
        validate_object_key("é" * 600)


@given(st.text(max_size=200))
def test_no_text_escapes_its_prefix(text: str) -> None:
    """Any id that is accepted yields a key strictly inside the transaction's folder."""
    keys = ObjectKeys("tenant")
    try:
        key = keys.evidence(text, COMPLETED, Evidence.VIDEO)
    except InvalidKeyError:
        return
    assert key == f"tenant/evidence/2026/03/09/{text}/video.webm"
    segments = key.split("/")
    assert len(segments) == 7
    assert all(s not in {"", ".", ".."} for s in segments)
    validate_object_key(key)
    assert RedisKeys().result_tx(text).count(":") == 3


@given(st.text(alphabet=st.sampled_from("ab.-_:/"), min_size=1, max_size=12))
def test_refs_split_back_into_their_parts(text: str) -> None:
    try:
        validate_ref(text)
    except InvalidKeyError:
        return
    for part in text.split(":"):
        validate_id(part)
        assert "/" not in part
