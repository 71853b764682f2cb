"""The optional webhook: where its events go and how they are signed and retried."""

from __future__ import annotations

import base64
import binascii

from pydantic import Field, SecretStr, field_validator

from worker.settings.base import Part, env_name, http_url

WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105  (the prefix, not a secret)
WEBHOOK_KEY_MIN_BYTES = 24


def webhook_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret ``whsec_<base64>`` (``ValueError`` otherwise).

    A secret without the prefix is refused rather than guessed at: the verifier libraries
    base64-decode whatever follows ``whsec_``, so a plain passphrase would sign with other
    bytes than the receiver checks with.
    """
    if not secret.startswith(WEBHOOK_SECRET_PREFIX):
        raise ValueError(
            f"must be {WEBHOOK_SECRET_PREFIX}<base64 key> (Standard Webhooks); make one with: "
            'python -c "import base64,secrets;'
            "print('whsec_'+base64.b64encode(secrets.token_bytes(32)).decode())\""
        )
    encoded = secret[len(WEBHOOK_SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise ValueError(f"the part after {WEBHOOK_SECRET_PREFIX} is not base64") from None
    if len(key) < WEBHOOK_KEY_MIN_BYTES:
        raise ValueError(
            f"the key after {WEBHOOK_SECRET_PREFIX} is {len(key)} bytes; "
            f"use at least {WEBHOOK_KEY_MIN_BYTES} (Standard Webhooks: 24 to 64)"
        )
    return key


class WebhookSettings(Part):
    """Your endpoint for signed events (unset = none are sent)."""

    webhook_url: str | None = Field(
        None, description="your endpoint for signed events (Standard Webhooks; optional)"
    )
    webhook_secret: SecretStr | None = Field(
        None, description="signing secret of the webhook events, whsec_<base64 key>"
    )
    webhook_timeout_s: float = Field(10.0, gt=0, description="seconds per webhook attempt")
    webhook_max_attempts: int = Field(
        12, ge=1, description="webhook attempts before dead-lettering"
    )
    webhook_claim_s: float = Field(
        30.0,
        gt=0,
        description="how long one attempt holds an event of the outbox; an attempt that died "
        "with its process leaves the event to another worker after this (at least twice "
        "IDV_WEBHOOK_TIMEOUT_S)",
    )
    webhook_keep_s: float = Field(
        86400.0,
        ge=60,
        description="how long a delivered or dead event stays in the outbox, so the same "
        "change announced again is not sent again",
    )

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        return http_url(value)

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return value
        webhook_key(value.get_secret_value())
        return value

    @property
    def enabled(self) -> bool:
        """Whether events are sent."""
        return self.webhook_url is not None

    def problems(self) -> list[tuple[str, str]]:
        has_secret = self.webhook_secret is not None and bool(
            self.webhook_secret.get_secret_value()
        )
        if self.webhook_url is not None and not has_secret:
            return [(env_name("webhook_secret"),
                     "must be set when IDV_WEBHOOK_URL is (webhooks are signed)")]  # fmt: skip
        if self.webhook_claim_s < 2 * self.webhook_timeout_s:
            return [(env_name("webhook_claim_s"),
                     "must be at least twice IDV_WEBHOOK_TIMEOUT_S (an attempt in flight "
                     "must not lose its claim)")]  # fmt: skip
        if has_secret and self.webhook_url is None:
            return [(env_name("webhook_url"),
                     "must be set when IDV_WEBHOOK_SECRET is (or unset the secret)")]  # fmt: skip
        return []
