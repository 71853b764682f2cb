"""The optional result webhook: where it goes and how it is signed and retried."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from worker.settings.base import Part, env_name, http_url


class WebhookSettings(Part):
    """Your endpoint for signed result webhooks (unset = none are sent)."""

    webhook_url: str | None = Field(
        None, description="your endpoint for signed result webhooks (optional)"
    )
    webhook_secret: SecretStr | None = Field(
        None, description="HMAC-SHA256 key of the webhook signature"
    )
    webhook_timeout_s: float = Field(10.0, gt=0, description="seconds per webhook attempt")
    webhook_max_attempts: int = Field(
        12, ge=1, description="webhook attempts before dead-lettering"
    )

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        return http_url(value)

    @property
    def enabled(self) -> bool:
        """Whether result webhooks are sent."""
        return self.webhook_url is not None

    def problems(self) -> list[tuple[str, str]]:
        has_secret = self.webhook_secret is not None and bool(
            self.webhook_secret.get_secret_value()
        )
        if self.webhook_url is not None and not has_secret:
            return [(env_name("webhook_secret"),
                     "must be set when IDV_WEBHOOK_URL is (webhooks are signed)")]  # fmt: skip
        if has_secret and self.webhook_url is None:
            return [(env_name("webhook_url"),
                     "must be set when IDV_WEBHOOK_SECRET is (or unset the secret)")]  # fmt: skip
        return []
