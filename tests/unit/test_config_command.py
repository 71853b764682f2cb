"""``idv-worker config`` never shows a secret: SecretStr settings and credentials in URLs."""

from __future__ import annotations

import pytest

from worker.commands.config import describe, mask_url
from worker.settings import load_settings


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:secret@host:6379/0", "redis://:***@host:6379/0"),
        ("rediss://user:secret@host/1", "rediss://user:***@host/1"),
        ("redis://token@host/0", "redis://***@host/0"),
        ("https://h/hook?token=secret&flag", "https://h/hook?token=***&flag"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("not a url", "not a url"),
    ],
)
def test_credentials_inside_urls_are_masked(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_the_current_values_show_no_secret() -> None:
    settings = load_settings(
        redis_url="redis://:MARKER1@h:6379/0",
        broker_url="redis://u:MARKER2@h/1",
        webhook_url="https://h/x?sig=MARKER3",
        webhook_secret="whsec_MARKER4" + "A" * 25,
        access_key_secret="MARKER5",
        callback_tokens="MARKER6,MARKER7",
        callback_token_secret="MARKER8",
        sentry_dsn="https://MARKER9@sentry.example/1",
        s3_secret_access_key="MARKER10",
    )
    text = repr(describe(settings))
    assert "MARKER" not in text
