"""Clock, fault and quota configuration, range parsing, callback URLs, evidence bytes."""

from __future__ import annotations

import hashlib

import pytest

from worker.emulator.callbacks import callback_url
from worker.emulator.clock import EmulatedClock
from worker.emulator.config import ConfigError, Faults, parse_access_key, parse_quotas
from worker.emulator.evidence import parse_range
from worker.emulator.media import VIDEO_BLOCK, WEBM_MAGIC, iter_video, video_sha256
from worker.emulator.transactions import Transaction, new_transaction_id


class Real:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_clock_offset_advance_and_speed() -> None:
    real = Real()
    clock = EmulatedClock(real)
    assert clock.now() == 1000.0
    clock.advance(60)
    real.t += 1
    assert clock.now() == 1061.0
    clock.set_speed(10)
    real.t += 2
    assert clock.now() == 1081.0
    clock.set_offset(-5)
    assert clock.now() == real.t - 5
    assert clock.speed == 10
    clock.reset()
    real.t += 3
    assert clock.now() == real.t
    with pytest.raises(ValueError, match="speed"):
        clock.set_speed(-1)


def test_faults_update_validates_everything_or_nothing() -> None:
    faults = Faults()
    faults.update(
        {"error_500_rate": "0.5", "actions": "CheckResult,DocOcrV2", "break_downloads": 2}
    )
    assert faults.error_500_rate == 0.5
    assert faults.actions == ["CheckResult", "DocOcrV2"]
    assert faults.applies_to("CheckResult")
    assert not faults.applies_to("Initialize")
    with pytest.raises(ConfigError, match="probability"):
        faults.update({"drop_rate": 0.1, "truncate_rate": 2})
    assert faults.drop_rate == 0.0
    with pytest.raises(ConfigError, match="unknown fault"):
        faults.update({"explode": 1})
    faults.update({"forbidden_code": "Forbidden.AccountAccessDenied", "actions": None})
    assert faults.applies_to("Initialize")
    assert faults.forbidden_code == "Forbidden.AccountAccessDenied"


def test_quota_and_key_parsing() -> None:
    assert parse_quotas({"ID_OCR_MIN": "50", "ID_OCR_MIN:DocOcrV2": 8}) == {
        "ID_OCR_MIN": 50.0,
        "ID_OCR_MIN:DocOcrV2": 8.0,
    }
    with pytest.raises(ConfigError):
        parse_quotas({"eKYC": 0})
    assert parse_access_key("ak:se:cret") == ("ak", "se:cret")
    with pytest.raises(ConfigError):
        parse_access_key("no-secret")


def test_range_parsing() -> None:
    assert parse_range(None, 100) is None
    assert parse_range("bytes=10-", 100) == (10, 100)
    assert parse_range("bytes=10-19", 100) == (10, 20)
    assert parse_range("bytes=90-500", 100) == (90, 100)
    assert parse_range("bytes=-30", 100) == (70, 100)
    for bad in ("bytes=100-", "items=1-", "bytes=5-1", "bytes=1-2,4-5", "bytes=x-"):
        with pytest.raises(ValueError, match=r"range|literal"):
            parse_range(bad, 100)


def test_callback_url_keeps_existing_parameters() -> None:
    tx = Transaction(
        transaction_id="hk" + "0" * 30,
        product_code="eKYC",
        merchant_biz_id="b1",
        merchant_user_id="u",
        created_at=0,
        callback_url="http://127.0.0.1:9/cb?tenant=a&x=1",
        callback_token="tok en",
        passed="Y",
        sub_code="200",
    )
    assert callback_url(tx) == (
        "http://127.0.0.1:9/cb?tenant=a&x=1&transactionId=hk"
        + "0" * 30
        + "&passed=Y&subCode=200&callbackToken=tok+en"
    )


def test_transaction_ids_look_like_the_providers() -> None:
    tid = new_transaction_id()
    assert len(tid) == 32
    assert tid.startswith("hk")
    int(tid[2:], 16)


def test_video_bytes_are_deterministic_and_ranges_consistent() -> None:
    tid = "hk" + "1" * 30
    size = 2 * VIDEO_BLOCK + 12345
    whole = b"".join(iter_video(tid, 0, size))
    assert len(whole) == size
    assert whole.startswith(WEBM_MAGIC)
    assert hashlib.sha256(whole).hexdigest() == video_sha256(tid, size)
    assert b"".join(iter_video(tid, 1_500_000, size)) == whole[1_500_000:]
    assert video_sha256("hk" + "2" * 30, size) != video_sha256(tid, size)
    assert max(len(c) for c in iter_video(tid, 0, size)) <= 64 * 1024
