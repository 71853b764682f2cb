"""Key schema of the limiter's buckets (hash tags for Redis Cluster) and script loading."""

from __future__ import annotations

import fnmatch

import pytest

from worker.ratelimit import bucket_keys, parse_state_key, state_key_pattern
from worker.redisio import lua_script


def test_bucket_keys_share_one_hash_tag() -> None:
    keys = bucket_keys("idv:", "ID_OCR_MIN", "DocOcrV2")
    assert keys.state == "idv:{quota:ID_OCR_MIN:DocOcrV2}:state"
    assert keys.waiters == "idv:{quota:ID_OCR_MIN:DocOcrV2}:waiters"
    assert keys.expiry == "idv:{quota:ID_OCR_MIN:DocOcrV2}:expiry"
    tags = {key[key.index("{") + 1 : key.index("}")] for key in keys.all()}
    assert tags == {"quota:ID_OCR_MIN:DocOcrV2"}
    assert keys.bucket == "ID_OCR_MIN:DocOcrV2"


@pytest.mark.parametrize(
    ("product", "api"), [("ID{OCR", "DocOcrV2"), ("ID_OCR", "Doc:Ocr"), ("", "X"), ("A B", "X")]
)
def test_names_that_would_break_the_schema_are_refused(product: str, api: str) -> None:
    with pytest.raises(ValueError, match="rate-limit bucket"):
        bucket_keys("idv:", product, api)


def test_state_keys_parse_back_and_match_the_scan_pattern() -> None:
    keys = bucket_keys("prod*idv:", "eKYC_PRO", "CheckResult")
    assert parse_state_key("prod*idv:", keys.state) == keys
    assert parse_state_key("other:", keys.state) is None
    assert parse_state_key("prod*idv:", keys.waiters) is None
    pattern = state_key_pattern("prod*idv:")
    # Redis MATCH is glob-like; the namespace's own '*' must only match itself.
    assert pattern.startswith("prod\\*idv:")
    assert fnmatch.fnmatchcase(keys.state, pattern.replace("\\*", "[*]"))
    assert not fnmatch.fnmatchcase("prodXidv:{quota:A:B}:state", pattern.replace("\\*", "[*]"))


def test_scripts_carry_the_shared_prelude() -> None:
    for name in ("acquire", "feedback", "status"):
        source = lua_script("worker.ratelimit", name)
        assert "local function factor_now" in source
        assert source.index("local function clock_now") < source.index("clock_now(ARGV[1])")
    with pytest.raises(ValueError, match="unknown"):
        lua_script("worker.ratelimit", "nope")
    with pytest.raises(ValueError, match="unknown"):
        lua_script("worker.ratelimit", "prelude")
