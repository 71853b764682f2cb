"""Settings: parsing of IDV_ variables, defaults, and errors that name the variable."""

from __future__ import annotations

import subprocess
import sys

import pytest

from worker.cloudauth import DEFAULT_QUOTAS
from worker.ratelimit import QuotaTable, UnknownProduct
from worker.settings import Settings, SettingsError, load_settings


def quota_for(s: Settings, product: str, api: str) -> float:
    return QuotaTable(s.quotas, DEFAULT_QUOTAS).quota_for(product, api)


TEST_SUBJECT_KEY = "test-subject-key-0123456789"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("IDV_"):
            monkeypatch.delenv(name)
    # The one variable production requires (tests of its refusal unset it).
    monkeypatch.setenv("IDV_SUBJECT_KEY", TEST_SUBJECT_KEY)


def test_defaults_follow_the_published_quotas() -> None:
    s = load_settings()
    assert quota_for(s, "ID_OCR", "DocOcr") == 10
    assert quota_for(s, "FACE_LIVENESS", "CheckResult") == 50
    assert quota_for(s, "ID_OCR_MIN", "DocOcrV2") == 10  # unpublished: like ID_OCR
    assert s.quotas.quota_safety_margin == 0.015
    assert s.quotas.quota_burst == 1


@pytest.mark.parametrize("value", ["ID_OCR_MIN=50,eKYC=3", '{"ID_OCR_MIN": 50, "eKYC": 3}'])
def test_quotas_as_pairs_or_json_merge_over_defaults(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("IDV_QUOTAS", value)
    s = load_settings()
    assert quota_for(s, "ID_OCR_MIN", "DocOcrV2") == 50
    assert quota_for(s, "eKYC", "CheckResult") == 3
    assert quota_for(s, "FACE_VERIFY", "X") == DEFAULT_QUOTAS["FACE_VERIFY"]


def test_per_api_override_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDV_API_QUOTAS", "ID_OCR_MIN:DocOcrV2=8")
    s = load_settings()
    assert quota_for(s, "ID_OCR_MIN", "DocOcrV2") == 8
    assert quota_for(s, "ID_OCR_MIN", "CheckResult") == 10


def test_unknown_product_has_a_clear_error() -> None:
    with pytest.raises(UnknownProduct, match="IDV_QUOTAS"):
        quota_for(load_settings(), "NO_SUCH_PRODUCT", "CheckResult")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IDV_ENDPOINT", "cloudauth-intl.cn-hongkong.aliyuncs.com"),
        ("IDV_QUOTAS", "ID_OCR_MIN"),
        ("IDV_QUOTAS", "ID_OCR_MIN=-1"),
        ("IDV_API_QUOTAS", "DocOcrV2=5"),
        ("IDV_REDIS_URL", "localhost:6379"),
        ("IDV_SIGNATURE_SCHEME", "v4"),
        ("IDV_READ_TIMEOUT", "0"),
        ("IDV_NAMESPACE", "{idv}"),
    ],
)
def test_invalid_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert name in str(info.value)
    assert [var for var, _ in info.value.problems] == [name]


def test_callback_tokens_are_a_list_of_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDV_CALLBACK_TOKENS", "tok-a, tok-b")
    s = load_settings()
    assert [t.get_secret_value() for t in s.callbacks.callback_tokens] == ["tok-a", "tok-b"]
    assert "tok-a" not in repr(s)


def test_the_command_stops_with_the_variable_named() -> None:
    env = {"IDV_ENDPOINT": "not-a-url", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "worker", "config"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "IDV_ENDPOINT" in proc.stderr
