"""Who data is about: the key of the keyed pseudonyms that stand for merchant user ids."""

from __future__ import annotations

from pydantic import Field, SecretStr

from worker.settings.base import Part, env_name

MIN_SUBJECT_KEY = 16


class SubjectSettings(Part):
    """The secret behind every merchant user id kept in Redis, sent to the provider or audited."""

    subject_key: SecretStr | None = Field(
        None,
        description="HMAC-SHA256 key of the pseudonyms that replace merchant user ids in Redis, "
        "in MerchantUserId sent to the provider and in the erasure audit (at least 16 "
        "characters, e.g. `openssl rand -hex 32`); required in IDV_MODE=production, a fixed "
        "development key with a warning otherwise. Changing it orphans what was stored "
        "under the old one",
    )

    def problems(self) -> list[tuple[str, str]]:
        key = self.subject_key.get_secret_value() if self.subject_key is not None else None
        if key is not None and len(key) < MIN_SUBJECT_KEY:
            return [(env_name("subject_key"), f"must be at least {MIN_SUBJECT_KEY} characters")]
        return []
