"""Settings validated at load: every enumeration, finite numbers, and the rules between
variables, each refusal naming the variable to change."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from worker.errors import ConfigurationError
from worker.queues import MAX_COUNTDOWN_S
from worker.settings import MODES, SettingsError, load_settings
from worker.stores.subjects import Pseudonyms

WHSEC = "whsec_" + "A" * 32  # a well-formed webhook secret (a 24-byte key)
TEST_SUBJECT_KEY = "test-subject-key-0123456789"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("IDV_"):
            monkeypatch.delenv(name)
    # The one variable production requires (tests of its refusal unset it).
    monkeypatch.setenv("IDV_SUBJECT_KEY", TEST_SUBJECT_KEY)


def refused(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    return [var for var, _ in info.value.problems]


def test_production_refuses_pseudonyms_without_a_subject_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The settings load (so `config` and `doctor` still work); what would store or send an id
    # under the public development key refuses, naming the variable.
    monkeypatch.delenv("IDV_SUBJECT_KEY")
    settings = load_settings()
    with pytest.raises(ConfigurationError, match="IDV_SUBJECT_KEY") as info:
        Pseudonyms.from_settings(settings.subjects, production=True)
    assert "IDV_MODE=production" in str(info.value)
    keyed = load_settings(subject_key=TEST_SUBJECT_KEY)
    assert Pseudonyms.from_settings(keyed.subjects, production=True).merchant_user("u") != (
        Pseudonyms.from_settings(settings.subjects).merchant_user("u")
    )


def test_development_starts_without_a_subject_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IDV_SUBJECT_KEY")
    monkeypatch.setenv("IDV_MODE", "development")
    settings = load_settings()
    assert settings.subjects.subject_key is None
    assert Pseudonyms.from_settings(settings.subjects, production=False).merchant_user("u")


@pytest.mark.parametrize("mode", MODES)
def test_a_short_subject_key_is_refused(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    assert refused({"IDV_MODE": mode, "IDV_SUBJECT_KEY": "x" * 15}, monkeypatch) == [
        "IDV_SUBJECT_KEY"
    ]
    monkeypatch.setenv("IDV_SUBJECT_KEY", "x" * 16)
    assert load_settings().subjects.subject_key is not None


def test_the_defaults_pass_every_rule() -> None:
    settings = load_settings()
    assert settings.problems() == []
    assert settings.deployment.mode == "production"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IDV_S3_SSE", "aes256-gcm"),
        ("IDV_S3_VERIFY_SSE", "sometimes"),
        ("IDV_MODE", "staging"),
        ("IDV_LOG_LEVEL", "TRACE"),
        ("IDV_LOG_FORMAT", "xml"),
        ("IDV_SIGNATURE_SCHEME", "hmac"),
    ],
)
def test_every_enumeration_is_checked(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    assert refused({name: value}, monkeypatch) == [name]


@pytest.mark.parametrize("sse", ["AES256", "aws:kms", "none", "aes256"])
def test_s3_sse_modes(monkeypatch: pytest.MonkeyPatch, sse: str) -> None:
    monkeypatch.setenv("IDV_S3_SSE", sse)
    assert load_settings().storage.s3_sse in ("AES256", "aws:kms", "none")


@pytest.mark.parametrize("mode", [*MODES, "Development"])
def test_modes(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    monkeypatch.setenv("IDV_MODE", mode)
    assert load_settings().deployment.mode == mode.lower()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IDV_QUOTAS", "ID_OCR_MIN=inf"),
        ("IDV_QUOTAS", "ID_OCR_MIN=nan"),
        ("IDV_QUOTAS", '{"eKYC": "Infinity"}'),
        ("IDV_API_QUOTAS", "ID_OCR_MIN:DocOcrV2=inf"),
        ("IDV_API_QUOTAS", "ID_OCR_MIN:DocOcrV2=nan"),
        ("IDV_READ_TIMEOUT", "inf"),
        ("IDV_QUOTA_SAFETY_MARGIN", "nan"),
        ("IDV_EVIDENCE_WINDOW_S", "inf"),
    ],
)
def test_infinite_and_nan_numbers_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    assert name in refused({name: value}, monkeypatch)


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://cloudauth-intl.cn-hongkong.aliyuncs.com/api",
        "https://cloudauth-intl.cn-hongkong.aliyuncs.com/?x=1",
        "https://cloudauth-intl.cn-hongkong.aliyuncs.com#frag",
        "https://user:pw@cloudauth-intl.cn-hongkong.aliyuncs.com",
        "https://:8080",
        "http://host:notaport",
    ],
)
def test_an_endpoint_with_a_path_or_more_is_refused(
    monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    assert refused({"IDV_ENDPOINT": endpoint}, monkeypatch) == ["IDV_ENDPOINT"]


def test_a_base_endpoint_with_a_trailing_slash_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDV_ENDPOINT", "https://cloudauth-intl.cn-hongkong.aliyuncs.com/")
    assert load_settings().provider.endpoint == "https://cloudauth-intl.cn-hongkong.aliyuncs.com"


def test_webhook_url_and_secret_come_together(monkeypatch: pytest.MonkeyPatch) -> None:
    assert refused({"IDV_WEBHOOK_URL": "https://h.example/hook"}, monkeypatch) == [
        "IDV_WEBHOOK_SECRET"
    ]
    monkeypatch.delenv("IDV_WEBHOOK_URL")
    assert refused({"IDV_WEBHOOK_SECRET": WHSEC}, monkeypatch) == ["IDV_WEBHOOK_URL"]
    monkeypatch.setenv("IDV_WEBHOOK_URL", "https://h.example/hook")
    assert load_settings().webhooks.webhook_url == "https://h.example/hook"
    # Empty values (docker compose's ${VAR:-}) are unset.
    monkeypatch.setenv("IDV_WEBHOOK_URL", "")
    monkeypatch.setenv("IDV_WEBHOOK_SECRET", "")
    assert load_settings().webhooks.webhook_url is None


def test_visibility_timeout_exceeds_the_longest_countdown_plus_the_time_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limit = 1800
    edge = str(int(limit + MAX_COUNTDOWN_S))
    env = {"IDV_TASK_TIME_LIMIT_S": str(limit), "IDV_BROKER_VISIBILITY_TIMEOUT_S": edge}
    assert refused(env, monkeypatch) == ["IDV_BROKER_VISIBILITY_TIMEOUT_S"]
    monkeypatch.setenv("IDV_BROKER_VISIBILITY_TIMEOUT_S", str(int(edge) + 1))
    assert load_settings().broker.broker_visibility_timeout_s == int(edge) + 1


@pytest.mark.parametrize("name", ["IDV_BATCH_LEASE_S", "IDV_ONBOARDING_LEASE_S"])
def test_a_lease_outlasts_three_heartbeats(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    env = {
        "IDV_HEARTBEAT_EVERY_S": "2",
        "IDV_BATCH_LEASE_S": "6",
        "IDV_ONBOARDING_LEASE_S": "6",
        name: "5.9",
    }
    assert refused(env, monkeypatch) == [name]
    monkeypatch.setenv(name, "6")  # the nearest neighbour that is allowed
    assert load_settings().problems() == []
    # A long limiter wait no longer matters: the heartbeat renews the lease meanwhile.
    monkeypatch.setenv("IDV_LIMITER_MAX_WAIT_S", "60")
    assert load_settings().problems() == []


@pytest.mark.parametrize(
    ("env", "named"),
    [
        (
            {"IDV_RECONCILE_AFTER_S": "1800", "IDV_EVIDENCE_WINDOW_S": "1800"},
            "IDV_RECONCILE_AFTER_S",
        ),
        (
            {"IDV_ARCHIVE_MARGIN_S": "2592000", "IDV_PROVIDER_RETENTION_S": "2592000"},
            "IDV_ARCHIVE_MARGIN_S",
        ),
        ({"IDV_FLOW_LIFETIME_S": "2592000"}, "IDV_FLOW_LIFETIME_S"),
        ({"IDV_BATCH_CHUNK_BUDGET_S": "1800"}, "IDV_BATCH_CHUNK_BUDGET_S"),
        ({"IDV_S3_STALE_UPLOAD_AGE_S": "1800"}, "IDV_S3_STALE_UPLOAD_AGE_S"),
        ({"IDV_S3_KMS_KEY_ID": "alias/idv"}, "IDV_S3_KMS_KEY_ID"),
    ],
)
def test_other_cross_field_rules(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    assert refused(env, monkeypatch) == [named]


def test_every_broken_rule_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"IDV_WEBHOOK_SECRET": WHSEC, "IDV_S3_KMS_KEY_ID": "alias/x", "IDV_BATCH_LEASE_S": "4.4"}
    # Each part's own rules (in part order: storage, webhooks), then the rules between parts.
    assert refused(env, monkeypatch) == [
        "IDV_S3_KMS_KEY_ID",
        "IDV_WEBHOOK_URL",
        "IDV_BATCH_LEASE_S",
    ]


def test_kms_key_with_kms_encryption_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDV_S3_SSE", "aws:kms")
    monkeypatch.setenv("IDV_S3_KMS_KEY_ID", "alias/idv")
    assert load_settings().storage.s3_kms_key_id == "alias/idv"


def test_settings_built_in_code_follow_the_same_rules() -> None:
    with pytest.raises(ValueError, match="IDV_BATCH_LEASE_S"):
        load_settings(batch_lease_s=4.4)


@pytest.mark.parametrize(
    ("name", "value"),
    [("IDV_ENDPOINT", "https://h.example/v1"), ("IDV_BROKER_VISIBILITY_TIMEOUT_S", "600")],
)
def test_config_exits_2_naming_the_variable(name: str, value: str) -> None:
    env = {name: value, "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "worker", "config"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert name in proc.stderr
