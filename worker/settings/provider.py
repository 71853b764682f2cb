"""The provider's endpoint, credentials and the HTTP limits of every call to it."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from worker.settings.base import Part, choice


class ProviderSettings(Part):
    """Where the provider is, who we are to it, and how long a call may take."""

    endpoint: str = Field(
        "http://127.0.0.1:8765",
        description="Base URL of the provider, e.g. https://cloudauth-intl.cn-hongkong.aliyuncs.com",
    )
    region: str = Field(
        "cn-hongkong", description="provider region id (informational; the endpoint decides)"
    )
    access_key_id: str = Field(
        "idv-demo-key", description="AccessKey id (RAM user with AliyunAntCloudAuthFullAccess)"
    )
    access_key_secret: SecretStr = Field(
        SecretStr("idv-demo-secret"), description="AccessKey secret"
    )
    security_token: SecretStr | None = Field(
        None, description="STS security token, when using temporary credentials"
    )
    signature_scheme: Literal["acs3", "rpc"] = Field(
        "acs3", description="acs3 (ACS3-HMAC-SHA256) or rpc (HMAC-SHA1)"
    )
    connect_timeout: float = Field(5.0, gt=0, description="seconds to connect to the provider")
    read_timeout: float = Field(10.0, gt=0, description="seconds to wait for the provider's answer")
    max_connections: int = Field(32, ge=1, description="pooled HTTP connections per process")
    max_retry_after_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="longest wait honoured from the provider's x-acs-retry-after (and any "
        "error's retry_after) before a retry; the work's deadline caps it too",
    )
    max_response_bytes: int = Field(
        8 * 1024 * 1024,
        ge=64 * 1024,
        description="largest provider reply read; a longer one is a MalformedResponse (the rest "
        "is not read)",
    )
    max_response_depth: int = Field(
        64, ge=8, le=512, description="deepest JSON nesting accepted in a provider reply"
    )

    @field_validator("signature_scheme", mode="before")
    @classmethod
    def _scheme(cls, value: Any) -> str:
        return choice(value, ("acs3", "rpc"))

    @field_validator("endpoint")
    @classmethod
    def _endpoint_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be a full base URL starting with http:// or https://")
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018  (raises on a bad port)
        except ValueError:
            raise ValueError("not a valid URL") from None
        if not parts.hostname:
            raise ValueError("must name a host")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(
                "must be a base URL without path, query or fragment (the API is at '/')"
            )
        if parts.username or parts.password:
            raise ValueError("must not carry credentials (use IDV_ACCESS_KEY_ID/SECRET)")
        return value.rstrip("/")
