"""Quota algorithms (sliding, fixed, token bucket) and the ``max_in_window`` ground truth."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.emulator.config import ConfigError
from worker.emulator.quotas import QuotaBook


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_quota_admits_up_to_the_limit_in_any_second() -> None:
    clock = FakeTime()
    book = QuotaBook({"ID_OCR_MIN": 3}, now=clock)
    assert [book.admit("ID_OCR_MIN", "DocOcrV2") for _ in range(4)] == [True, True, True, False]
    clock.now += 0.999
    assert not book.admit("ID_OCR_MIN", "DocOcrV2")
    clock.now += 0.002  # the first three are now more than 1 s old
    assert book.admit("ID_OCR_MIN", "DocOcrV2")
    stats = book.snapshot()["DocOcrV2"]["ID_OCR_MIN"]
    assert stats == {"served": 4, "throttled": 2, "errors": 0, "max_in_window": 3}


def test_every_sliding_window_not_only_aligned_seconds() -> None:
    clock = FakeTime()
    book = QuotaBook({"eKYC": 2}, now=clock)
    clock.now = 100.9
    assert book.admit("eKYC", "Initialize")
    assert book.admit("eKYC", "Initialize")
    clock.now = 101.1  # a new "calendar second", but the last second still holds two
    assert not book.admit("eKYC", "Initialize")


def test_quota_is_per_api_of_a_product_with_overrides() -> None:
    clock = FakeTime()
    book = QuotaBook({"eKYC": 1, "eKYC:CheckResult": 2}, now=clock)
    assert book.admit("eKYC", "Initialize")
    assert not book.admit("eKYC", "Initialize")
    assert book.admit("eKYC", "CheckResult")
    assert book.admit("eKYC", "CheckResult")
    assert not book.admit("eKYC", "CheckResult")
    assert book.limit("eKYC", "DocOcrV2") == 1


def test_unknown_product_is_unlimited_and_quotas_reset() -> None:
    clock = FakeTime()
    book = QuotaBook({"eKYC": 1}, now=clock)
    assert all(book.admit("OTHER", "CheckResult") for _ in range(50))
    book.update({"eKYC": 5})
    assert book.limit("eKYC", "Initialize") == 5
    book.reset_quotas()
    assert book.limit("eKYC", "Initialize") == 1


def test_errors_are_counted_by_product_or_by_code() -> None:
    book = QuotaBook({"eKYC": 1})
    book.record_error("eKYC", "CheckResult", "ProcessNotCompleted")
    book.record_error(None, "CheckResult", "SignatureDoesNotMatch")
    assert book.snapshot()["CheckResult"]["eKYC"]["errors"] == 1
    assert book.rejected == {"SignatureDoesNotMatch": 1}
    book.reset_stats()
    assert book.snapshot() == {}
    assert book.rejected == {}


@settings(max_examples=60, deadline=None)
@given(
    quota=st.integers(min_value=1, max_value=6),
    gaps=st.lists(st.floats(min_value=0, max_value=0.6), min_size=1, max_size=80),
)
def test_no_window_exceeds_the_quota_and_max_is_exact(quota: int, gaps: list[float]) -> None:
    clock = FakeTime()
    book = QuotaBook({"P": quota}, now=clock)
    served: list[float] = []
    for gap in gaps:
        clock.now += gap
        if book.admit("P", "A"):
            served.append(clock.now)
    # Brute force over windows (t - 1, t] ending at each served request.
    worst = max(sum(1 for s in served if t - 1 < s <= t) for t in served)
    assert worst <= quota
    assert book.snapshot()["A"]["P"]["max_in_window"] == worst
    assert book.snapshot()["A"]["P"]["served"] + book.snapshot()["A"]["P"]["throttled"] == len(gaps)


def test_fixed_windows_reset_on_whole_seconds() -> None:
    clock = FakeTime()
    book = QuotaBook({"P": 3}, now=clock, algorithm="fixed")
    clock.now = 100.5
    assert [book.admit("P", "A") for _ in range(4)] == [True, True, True, False]
    clock.now = 100.999
    assert not book.admit("P", "A")
    clock.now = 101.0  # a new second: the count starts again, right behind the first three
    assert [book.admit("P", "A") for _ in range(4)] == [True, True, True, False]
    # Across the boundary six calls fell within one sliding second: fixed windows allow it.
    assert book.snapshot()["A"]["P"]["max_in_window"] == 6


def test_token_bucket_burst_and_refill() -> None:
    clock = FakeTime()
    book = QuotaBook({"P": 2}, now=clock, algorithm="token-bucket", burst=4)
    assert [book.admit("P", "A") for _ in range(5)] == [True] * 4 + [False]
    clock.now += 0.5  # one token back at 2 a second
    assert [book.admit("P", "A") for _ in range(2)] == [True, False]
    clock.now += 100  # the bucket holds at most the burst
    assert sum(book.admit("P", "A") for _ in range(10)) == 4
    # Without a burst, the bucket holds one second of quota.
    plain = QuotaBook({"P": 3}, now=clock, algorithm="token-bucket")
    assert sum(plain.admit("P", "A") for _ in range(10)) == 3


def test_algorithm_switch_and_validation() -> None:
    clock = FakeTime()
    book = QuotaBook({"P": 1}, now=clock)
    assert book.admit("P", "A")
    assert not book.admit("P", "A")
    book.set_algorithm("token-bucket", 5)
    assert book.policy() == {"algorithm": "token-bucket", "burst": 5}
    assert sum(book.admit("P", "A") for _ in range(9)) == 5
    for algorithm, burst in (("leaky", None), ("fixed", 0.5)):
        with pytest.raises(ConfigError):
            book.set_algorithm(algorithm, burst)
    book.reset_quotas()
    assert book.policy() == {"algorithm": "sliding", "burst": None}


@settings(max_examples=60, deadline=None)
@given(
    quota=st.integers(min_value=1, max_value=6),
    burst=st.integers(min_value=1, max_value=10),
    gaps=st.lists(st.floats(min_value=0, max_value=0.6), min_size=1, max_size=80),
)
def test_token_bucket_never_serves_more_than_burst_plus_refill(
    quota: int, burst: int, gaps: list[float]
) -> None:
    clock = FakeTime()
    book = QuotaBook({"P": quota}, now=clock, algorithm="token-bucket", burst=burst)
    served: list[float] = []
    for gap in gaps:
        clock.now += gap
        if book.admit("P", "A"):
            served.append(clock.now)
    for i, start in enumerate(served):
        for j in range(i, len(served)):
            # Calls in [start, served[j]]: the bucket plus what refilled meanwhile.
            assert j - i + 1 <= burst + quota * (served[j] - start) + 1e-6


@settings(max_examples=60, deadline=None)
@given(
    quota=st.integers(min_value=1, max_value=6),
    gaps=st.lists(st.floats(min_value=0, max_value=0.6), min_size=1, max_size=80),
)
def test_fixed_window_never_exceeds_the_quota_in_a_whole_second(
    quota: int, gaps: list[float]
) -> None:
    clock = FakeTime()
    book = QuotaBook({"P": quota}, now=clock, algorithm="fixed")
    per_second: dict[int, int] = {}
    for gap in gaps:
        clock.now += gap
        if book.admit("P", "A"):
            second = math.floor(clock.now)
            per_second[second] = per_second.get(second, 0) + 1
    assert max(per_second.values(), default=0) <= quota
