"""How every Redis client reaches Redis (URL or Sentinel), and the prefix of every key."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import NoDecode

from worker.settings.base import Part, choice, env_name, parse_list

TLS_VERIFY = ("required", "optional", "none")

SENTINEL_URL = (
    "sentinel:// URLs are not read here: set IDV_REDIS_SENTINELS=host:port,... and "
    "IDV_REDIS_SENTINEL_MASTER, with IDV_REDIS_URL=redis://[:password@]any/<db>"
)


def sentinel_address(entry: str) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``, or ``host`` for port 26379) as a pair."""
    try:
        parts = urlsplit("//" + entry.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        host = None
    if not host or parts.path or parts.username or parts.query:
        raise ValueError(f"expected host:port, got {entry[:80]!r}")
    return host, port or 26379


class RedisSettings(Part):
    """The Redis of the limiter, the ledger, the stores (and the broker by default)."""

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis for the limiter, records, batches (and the broker by default)",
    )
    redis_sentinels: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Redis Sentinel addresses host:port, comma-separated: every client "
        "(broker, limiter, stores) asks them for the current primary; IDV_REDIS_URL then gives "
        "only the database, password and TLS (rediss://) of the primary",
    )
    redis_sentinel_master: str | None = Field(
        None,
        validate_default=True,
        description="name of the primary the sentinels monitor (required with IDV_REDIS_SENTINELS)",
    )
    redis_sentinel_password: SecretStr | None = Field(
        None, description="password of the sentinels themselves (their requirepass), if any"
    )
    redis_sentinel_username: str | None = Field(
        None, description="ACL user of the sentinels themselves, with IDV_REDIS_SENTINEL_PASSWORD"
    )
    redis_sentinel_tls: bool | None = Field(
        None,
        description="TLS to the sentinels themselves (with the IDV_REDIS_TLS_* files); "
        "unset = as the primary (IDV_REDIS_URL rediss://)",
    )
    redis_tls_ca_file: str | None = Field(
        None,
        description="CA certificates (PEM) that sign the Redis server's certificate, for every "
        "TLS connection (rediss:// URLs: broker, limiter, stores; sentinels with TLS); "
        "unset = the system's CAs",
    )
    redis_tls_cert_file: str | None = Field(
        None,
        description="client certificate (PEM) for a Redis that asks for one (tls-auth-clients)",
    )
    redis_tls_key_file: str | None = Field(
        None, description="private key (PEM) of IDV_REDIS_TLS_CERT_FILE"
    )
    redis_tls_verify: str = Field(
        "required",
        description="check of the Redis server's certificate: required (signed by the CA and "
        "naming the host), optional (signed by the CA, any host name) or none (not checked)",
    )
    redis_allow_insecure: bool = Field(
        False,
        description="IDV_MODE=production: start even on a Redis reached without TLS or without "
        "authentication (a warning at every start); else such a start is refused",
    )
    namespace: str = Field("idv:", description="prefix of every Redis key")
    redis_wait_replicas: int = Field(
        0,
        ge=0,
        le=16,
        description="replicas that must hold a ledger write or a billed-call claim before it "
        "counts as done (Redis WAIT after the write; 0 = off): a Sentinel failover then cannot "
        "lose one; a write fewer replicas confirm in time fails and is retried",
    )
    redis_wait_timeout_ms: int = Field(
        500,
        ge=1,
        le=4000,
        description="how long a write waits for IDV_REDIS_WAIT_REPLICAS replicas to confirm it "
        "(milliseconds; below the clients' 5 s socket timeout)",
    )

    @field_validator("redis_tls_verify", mode="before")
    @classmethod
    def _tls_verify(cls, value: Any) -> str:
        return choice(value, TLS_VERIFY)

    @field_validator(
        "redis_tls_ca_file", "redis_tls_cert_file", "redis_tls_key_file", "redis_sentinel_username"
    )
    @classmethod
    def _optional_text(cls, value: str | None) -> str | None:
        return (value or "").strip() or None

    def problems(self) -> list[tuple[str, str]]:
        if bool(self.redis_tls_cert_file) == bool(self.redis_tls_key_file):
            return []
        missing = "redis_tls_key_file" if self.redis_tls_cert_file else "redis_tls_cert_file"
        return [(env_name(missing), "a client certificate and its key are set together")]

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if value.startswith("sentinel://"):
            raise ValueError(SENTINEL_URL)
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not value or any(c in value for c in "{} \t\n"):
            raise ValueError("must be non-empty, without braces or whitespace")
        return value

    @field_validator("redis_sentinels", mode="before")
    @classmethod
    def _sentinels_list(cls, value: Any) -> Any:
        return parse_list(value)

    @field_validator("redis_sentinels", mode="after")
    @classmethod
    def _sentinels(cls, value: list[str], info: ValidationInfo) -> list[str]:
        for entry in value:
            sentinel_address(entry)
        if value and str(info.data.get("redis_url", "")).startswith("unix://"):
            raise ValueError("a Redis behind sentinels is reached over TCP: set IDV_REDIS_URL "
                             "to redis://[:password@]any/<db> (its host is not used)")  # fmt: skip
        return value

    @field_validator("redis_sentinel_master")
    @classmethod
    def _sentinel_master(cls, value: str | None, info: ValidationInfo) -> str | None:
        value = (value or "").strip() or None
        sentinels = info.data.get("redis_sentinels")
        if sentinels and value is None:
            raise ValueError("required with IDV_REDIS_SENTINELS: the monitored primary's name")
        if value is not None and sentinels == []:
            raise ValueError("set IDV_REDIS_SENTINELS too (the sentinels to ask)")
        return value

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """``IDV_REDIS_SENTINELS`` as (host, port) pairs (26379 when no port is given)."""
        return [sentinel_address(entry) for entry in self.redis_sentinels]
