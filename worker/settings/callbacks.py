"""The provider's callbacks: which tokens authenticate them, where they arrive."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from worker.settings.base import Part, http_url, parse_list


class CallbackSettings(Part):
    """Tokens of the provider's callbacks, the URL handed out for them, and their limits."""

    callback_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="accepted callbackToken values, comma-separated (several during rotation)",
    )
    callback_token_secret: SecretStr | None = Field(
        None,
        description="HMAC-SHA256 key of per-flow callback tokens (derived from the flow's "
        "MerchantBizId); accepted beside IDV_CALLBACK_TOKENS",
    )
    callback_url: str | None = Field(
        None,
        description="public URL of the receiver's callback endpoint, given to Initialize by "
        "'flows start' (productCode and merchantBizId are added to its query)",
    )
    callback_require_known: bool = Field(
        False,
        description="refuse callbacks for transactions the ledger has never seen (a derived "
        "token is always refused for them)",
    )
    callback_max_unknown: int = Field(
        10_000,
        ge=0,
        description="most open ledger entries that static-token callbacks for transactions "
        "never started through us may create (503 above, nothing written)",
    )
    callback_path: str = Field("/callback", description="path of the receiver's callback endpoint")
    callback_max_bytes: int = Field(8192, ge=256, description="largest accepted query + body")

    @field_validator("callback_tokens", mode="before")
    @classmethod
    def _tokens_list(cls, value: Any) -> Any:
        return parse_list(value)

    @field_validator("callback_path")
    @classmethod
    def _callback_path(cls, value: str) -> str:
        if not value.startswith("/") or any(c in value for c in "?# \t\n"):
            raise ValueError("must be a URL path starting with '/'")
        return value.rstrip("/") or "/"

    @field_validator("callback_url")
    @classmethod
    def _callback_url(cls, value: str | None) -> str | None:
        return http_url(value)
