"""Runtime configuration: one ``Settings`` object read from ``IDV_*`` variables, built once.

Invalid values fail at start with a message that names the variable (``SettingsError``):
each value on its own (types, ranges, enumerations; ``inf`` and ``nan`` refused everywhere),
then the rules between variables (``Settings.cross_field_problems``), each naming the variable
to change.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from worker.errors import ConfigurationError

ENV_PREFIX = "IDV_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")
S3_SSE_MODES = ("AES256", "aws:kms", "none")
S3_VERIFY_SSE_MODES = ("strict", "reported", "off")
MODES = ("production", "development")

# The longest countdown (ETA) any Celery message may carry (re-exported by worker.queues).
# IDV_BROKER_VISIBILITY_TIMEOUT_S must exceed it plus IDV_TASK_TIME_LIMIT_S: a message whose
# ETA, or whose run, lies beyond the visibility timeout is redelivered to a second worker.
MAX_COUNTDOWN_S = 300.0

# Spec §7 (DOC-QPS). ID_OCR_MIN is not published: 10 like ID_OCR, and configurable.
DEFAULT_QUOTAS: dict[str, float] = {
    "eKYC": 10,
    "eKYC_NDI": 10,
    "eKYC_PRO": 5,
    "eKYC_MIN": 10,
    "FACE_LIVENESS_PRO": 10,
    "FACE_LIVENESS": 50,
    "FACE_IDU": 50,
    "FACE_IDU_MIN": 10,
    "FACE_VERIFY": 50,
    "FACE_GUARD": 50,
    "FACE_GUARD_PRO": 50,
    "FACE_COMPARE": 10,
    "FACE_CROSS_COMPARE": 10,
    "FACE_DEEPFAKE": 10,
    "ID_OCR": 10,
    "ID_OCR_MIN": 10,
    "ID_NFC": 10,
    "ID_OCR_MAX": 5,
    "ID_2META": 50,
    "eKYC_Date_MIN": 10,
    "MOBILE_2META": 50,
    "MOBILE_3META": 50,
    "BANK_CARD_N_META": 50,
    "CREDENTIAL_DETECT": 10,
    "CREDENTIAL_RECOGNITION": 5,
    "ADD_VERIFY_PRO": 20,
}


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class CrossFieldError(ValueError):
    """Raised by the model validator: the rules between variables that do not hold."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{var}: {msg}" for var, msg in problems))


class SettingsError(ConfigurationError):
    """Raised when the environment holds an invalid ``IDV_`` value; names each variable."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = [f"{var}: {msg}" for var, msg in problems]
        super().__init__("invalid configuration:\n  " + "\n  ".join(lines))


def _parse_mapping(value: Any, what: str) -> Any:
    """Accept JSON (``{"ID_OCR": 10}``) or ``K=V,K=V`` for mapping variables."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return {}
    if text.startswith("{"):
        return json.loads(text)
    out: dict[str, str] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, val = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected {what} as KEY=VALUE[,KEY=VALUE...] or JSON, got {part!r}")
        out[key.strip()] = val.strip()
    return out


def _parse_list(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [v.strip() for v in text.split(",") if v.strip()]
    return value


# The folders the worker writes under IDV_S3_PREFIX (``worker.keys.ObjectKeys`` and the
# encryption probe); a manifest must never read them back.
WORKER_FOLDERS = ("evidence/", "results/", "batches/", "_idv/")
_KEY_PREFIX_RE = re.compile(r"(?:[A-Za-z0-9_\-][A-Za-z0-9._\-]*/)+")


def _key_folder(prefix: str) -> str:
    """``prefix`` as a key folder: no leading slash, one trailing slash (``""`` stays empty)."""
    stripped = prefix.strip("/")
    return stripped + "/" if stripped else ""


_SENTINEL_URL = (
    "sentinel:// URLs are not read here: set IDV_REDIS_SENTINELS=host:port,... and "
    "IDV_REDIS_SENTINEL_MASTER, with IDV_REDIS_URL=redis://[:password@]any/<db>"
)


def _sentinel_address(entry: str) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``, or ``host`` for port 26379) as a pair."""
    try:
        parts = urlsplit("//" + entry.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        host = None
    if not host or parts.path or parts.username or parts.query:
        raise ValueError(f"expected host:port, got {entry[:80]!r}")
    return host, port or 26379


class Settings(BaseSettings):
    """All configuration. Every field maps to ``IDV_<FIELD NAME IN UPPER CASE>``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        case_sensitive=False,
        frozen=True,
        allow_inf_nan=False,
    )

    mode: str = Field(
        "production",
        description="production (refuse to start on a Redis that would lose data: no AOF/RDB "
        "persistence, or an evicting maxmemory-policy) or development (warn only)",
    )

    # --- provider ---
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
    signature_scheme: str = Field("acs3", description="acs3 (ACS3-HMAC-SHA256) or rpc (HMAC-SHA1)")
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

    # --- quotas (QPS per product code, applied to each API of the product) ---
    quotas: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_QUOTAS),
        description="QPS per product code, e.g. ID_OCR_MIN=10,eKYC=10 (merged over the defaults)",
    )
    # per-API override: "ID_OCR_MIN:DocOcrV2=8"
    api_quotas: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=dict, description="per-API overrides, e.g. ID_OCR_MIN:DocOcrV2=8"
    )
    quota_safety_margin: float = Field(
        0.015,
        ge=0,
        lt=0.5,
        description="fraction of each quota left unused as a jitter budget: where a bucket "
        "starts before it learns its own (worker.ratelimit.policies)",
    )
    quota_margin_learning: bool = Field(
        True, description="learn each bucket's margin from throttles and send gaps"
    )
    quota_margin_floor: float = Field(
        0.002, ge=0, lt=0.5, description="the least margin a bucket learns"
    )
    quota_margin_ceiling: float = Field(
        0.10, ge=0, lt=0.5, description="the most margin a bucket learns"
    )
    quota_burst: int = Field(
        1, ge=1, description="calls that may start back to back (1 = evenly spaced)"
    )
    limiter_max_wait_s: float = Field(
        60.0,
        gt=0,
        le=600,
        description="longest a call waits in-process for its limiter slot before giving up "
        "(MaxWaitExceeded: the task retries later)",
    )

    # --- redis ---
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
    namespace: str = Field("idv:", description="prefix of every Redis key")

    # --- celery ---
    broker_url: str | None = Field(None, description="Celery broker; defaults to IDV_REDIS_URL")
    broker_visibility_timeout_s: int = Field(
        3600,
        ge=60,
        description="seconds before an unacknowledged message is redelivered (must exceed "
        "IDV_TASK_TIME_LIMIT_S plus the longest countdown, 300 s)",
    )
    task_time_limit_s: int = Field(1800, ge=60, description="hard time limit of one task run")

    # --- storage (S3 API) ---
    s3_endpoint_url: str | None = Field(
        None, description="S3 API endpoint (MinIO etc.); unset = AWS"
    )
    s3_region: str = Field("us-east-1", description="S3 region")
    s3_bucket: str = Field(
        "idv-evidence", description="bucket for evidence, result documents and batch results"
    )
    s3_access_key_id: str | None = Field(
        None, description="S3 access key (unset = the default AWS credential chain)"
    )
    s3_secret_access_key: SecretStr | None = Field(None, description="S3 secret key")
    s3_kms_key_id: str | None = Field(None, description="KMS key id when IDV_S3_SSE=aws:kms")
    s3_prefix: str = Field("", description="prefix of every object key")
    s3_upload_concurrency: int = Field(
        3,
        ge=1,
        le=64,
        description="parts of one multipart upload sent at once; each upload holds up to "
        "(this + 1) parts in memory",
    )
    # Encryption and upkeep of the store (checked by `idv-worker doctor` and at worker start).
    s3_sse: str = Field("AES256", description="server-side encryption: AES256, aws:kms or none")
    s3_verify_sse: str = Field(
        "strict",
        description="per-object SSE check: strict (the store must report IDV_S3_SSE: AWS, "
        "MinIO with a KMS), reported (check only what the store reports: stores that accept "
        "SSE silently) or off",
    )
    s3_upload_sweep_every_s: int = Field(
        3600, ge=60, description="how often beat sweeps multipart uploads left behind"
    )
    s3_stale_upload_age_s: int = Field(
        86400,
        ge=600,
        description="a multipart upload started longer ago than this is aborted by the sweep",
    )

    # --- callbacks ---
    callback_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="accepted callbackToken values, comma-separated (several during rotation)",
    )
    callback_path: str = Field("/callback", description="path of the receiver's callback endpoint")
    callback_max_bytes: int = Field(8192, ge=256, description="largest accepted query + body")
    receiver_host: str = Field("127.0.0.1", description="receiver bind address")
    receiver_port: int = Field(8080, ge=0, le=65535, description="receiver port")

    # --- onboarding (CheckResult + evidence) ---
    onboarding_product: str = Field(
        "eKYC", description="product code whose CheckResult quota a callback uses by default"
    )
    evidence_window_s: float = Field(
        1800, gt=0, description="fresh evidence links can be had this long after completion"
    )
    evidence_part_size: int = Field(
        8 * 1024 * 1024, ge=5 * 1024 * 1024, description="multipart part size of evidence uploads"
    )
    evidence_chunk_size: int = Field(256 * 1024, ge=4096, description="download read size")
    evidence_max_links: int = Field(6, ge=1, description="links tried per video before giving up")
    onboarding_lease_s: float = Field(60, ge=5, description="per-transaction lease, renewed")

    # --- ledger, reconciler and archival (worker.ledger) ---
    reconcile_every_s: float = Field(
        30, gt=0, le=3600, description="how often beat runs the reconciler over overdue work"
    )
    reconcile_after_s: float = Field(
        120,
        ge=5,
        description="a started flow with no callback is polled with CheckResult after this long "
        "(then every this long); a run with no progress is re-driven after it",
    )
    flow_lifetime_s: float = Field(
        86400, ge=10, description="a started flow never completed within this is abandoned"
    )
    callback_url: str | None = Field(
        None,
        description="public URL of the receiver's callback endpoint, given to Initialize by "
        "'flows start' (productCode and merchantBizId are added to its query)",
    )
    callback_require_known: bool = Field(
        False, description="refuse callbacks for transactions the ledger has never seen"
    )
    provider_retention_s: float = Field(
        30 * 86400, ge=60, description="the provider deletes a result this long after the flow"
    )
    archive_every_s: float = Field(300, gt=0, description="how often beat runs the archival sweep")
    archive_margin_s: float = Field(
        86400,
        ge=0,
        description="archival's deadline is the provider's deletion minus this margin",
    )
    archive_batch: int = Field(
        500, ge=1, le=100_000, description="archival jobs queued per sweep (and in the queue)"
    )
    archive_realtime_reserve: float = Field(
        0.5,
        ge=0,
        lt=1,
        description="share of the CheckResult quota the archival forecast leaves to realtime work",
    )
    ledger_grace_s: int = Field(
        7 * 86400, ge=60, description="a finished transaction's ledger entry is kept this long"
    )

    # --- batch OCR (DocOcrV2 over a manifest; worker.batch) ---
    # DocOcrV2 takes one product plan (seed 002); anything else would be refused at each call.
    batch_product_code: Literal["ID_OCR_MIN"] = Field(
        "ID_OCR_MIN", description="product code of batch calls (DocOcrV2 takes only ID_OCR_MIN)"
    )
    batch_default_doc_type: str | None = Field(
        None, description="DocType for manifest rows that give none"
    )
    batch_chunk_size: int = Field(
        200, ge=1, le=5000, description="manifest rows per stored chunk and Celery message"
    )
    batch_lease_s: float = Field(
        120,
        ge=1,
        description="chunk lease, renewed per item; a dead worker's chunk is retaken after it "
        "(must exceed IDV_LIMITER_MAX_WAIT_S plus IDV_READ_TIMEOUT)",
    )
    batch_chunk_budget_s: float = Field(
        240, gt=0, description="a chunk task hands the rest of its chunk on after this long"
    )
    batch_item_attempts: int = Field(
        4, ge=1, description="tries per item within a task on throttling or transient errors"
    )
    batch_watchdog_interval_s: float = Field(
        30, gt=0, description="how often a running batch is checked for chunks a dead worker left"
    )
    batch_ttl_s: int = Field(
        35 * 86400, ge=3600, description="how long a batch's state stays in Redis after activity"
    )

    # --- result webhook (optional) ---
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

    # --- results (Redis records + stream, worker.stores.results) ---
    result_ttl_s: int = Field(
        35 * 86400,
        ge=60,
        # IDV_RESULT_TTL is the documented name; IDV_RESULT_TTL_S follows the field name.
        validation_alias=AliasChoices("result_ttl_s", "IDV_RESULT_TTL", "IDV_RESULT_TTL_S"),
        description="seconds a result record stays in Redis (env IDV_RESULT_TTL); default 35 "
        "days, past the provider's 30-day retention",
    )
    results_stream_maxlen: int = Field(
        100_000,
        ge=1,
        description="approximate length cap of the results stream (XADD MAXLEN ~); a consumer "
        "group that falls further behind loses the oldest events",
    )

    # --- observability ---
    sentry_dsn: SecretStr | None = Field(
        None, description="Sentry DSN (optional; events are scrubbed of PII)"
    )
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_format: str = Field(
        "text",
        description="text (key=value context) or json (one object per line: ts, level, logger, "
        "msg, context ids); applies to Celery's and libraries' records too",
    )
    sentry_environment: str = Field(
        "production", description="Sentry environment of every event (release: the version)"
    )
    metrics_timeout_s: float = Field(
        2.0,
        gt=0,
        le=30,
        description="Redis timeout of GET /metrics and 'idv-worker metrics' (503 / exit 1 after)",
    )

    # --- security: confined inputs, per-flow callback tokens, receiver limits, retention ---
    batch_source_root: str | None = Field(
        None,
        description="folder local manifest sources must resolve under (symlinks out of it and "
        "'..' are refused); unset = the manifest's own folder",
    )
    batch_allowed_url_prefixes: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="http(s) prefixes manifest sources may start with, comma-separated "
        "(scheme, host, port and path compared); empty = http(s) sources refused",
    )
    batch_allow_private_urls: bool = Field(
        False,
        description="let http(s) sources resolve to loopback, link-local or private addresses "
        "(development only)",
    )
    batch_allowed_buckets: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="buckets s3:// manifest sources may name, comma-separated; empty = only "
        "IDV_S3_BUCKET (which is read only under IDV_BATCH_IMPORT_PREFIX)",
    )
    batch_import_prefix: str = Field(
        "imports/",
        min_length=1,
        description="the only folder of IDV_S3_BUCKET manifest sources may read (a key prefix "
        "from the bucket's root); never the keys the worker writes (evidence/, results/, "
        "batches/ under IDV_S3_PREFIX)",
    )
    batch_source_timeout_s: float = Field(
        15.0, gt=0, le=300, description="longest time reading one manifest source may take"
    )
    callback_token_secret: SecretStr | None = Field(
        None,
        description="HMAC-SHA256 key of per-flow callback tokens (derived from the flow's "
        "MerchantBizId); accepted beside IDV_CALLBACK_TOKENS",
    )
    receiver_read_timeout_s: float = Field(
        10.0, gt=0, le=300, description="a request whose headers or body take longer is closed"
    )
    receiver_limit_concurrency: int = Field(
        512, ge=1, description="connections and requests the receiver serves at once (503 above)"
    )
    receiver_keep_alive_s: float = Field(
        5.0, gt=0, le=120, description="seconds an idle keep-alive connection stays open"
    )
    receiver_reject_limit: int = Field(
        30,
        ge=1,
        description="rejected callbacks (403/400) from one address per window before it is "
        "answered 429 without any work",
    )
    receiver_reject_window_s: float = Field(
        60.0, gt=0, description="window of IDV_RECEIVER_REJECT_LIMIT, seconds"
    )
    evidence_retention_days: int = Field(
        400,
        ge=1,
        description="days evidence and result documents are kept; the S3 lifecycle rule of "
        "'idv-worker s3 lifecycle --print'",
    )

    @field_validator("batch_allowed_url_prefixes", "batch_allowed_buckets", mode="before")
    @classmethod
    def _security_lists(cls, value: Any) -> Any:
        return _parse_list(value)

    @field_validator("batch_allowed_url_prefixes", mode="after")
    @classmethod
    def _url_prefixes(cls, value: list[str]) -> list[str]:
        for prefix in value:
            try:
                parts = urlsplit(prefix)
                parts.port  # noqa: B018  (raises on a bad port)
            except ValueError:
                raise ValueError(f"not a URL: {prefix[:80]!r}") from None
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"prefix must be an http(s) URL with a host: {prefix[:80]!r}")
            if parts.query or parts.fragment or parts.username or parts.password:
                raise ValueError("a prefix has no query, fragment or credentials")
            if "\\" in parts.path or any(s in (".", "..") for s in parts.path.split("/")):
                raise ValueError(f"a prefix has no dot segment or backslash: {prefix[:80]!r}")
            if re.search(r"%(?:2f|5c|25)", parts.path, re.IGNORECASE):
                raise ValueError(f"a prefix has no encoded '/', '\\' or '%': {prefix[:80]!r}")
        return value

    @field_validator("batch_allowed_buckets", mode="after")
    @classmethod
    def _buckets(cls, value: list[str]) -> list[str]:
        for bucket in value:
            if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", bucket):
                raise ValueError(f"not a bucket name: {bucket[:80]!r}")
        return value

    @field_validator("batch_import_prefix", mode="after")
    @classmethod
    def _import_prefix(cls, value: str) -> str:
        folder = _key_folder(value)
        segments = folder.split("/")[:-1]
        if not _KEY_PREFIX_RE.fullmatch(folder) or any(s in (".", "..") for s in segments):
            raise ValueError(
                "must be a folder of plain segments (letters, digits, '._-'), e.g. 'imports/'"
            )
        return folder

    @field_validator("quotas", "api_quotas", mode="before")
    @classmethod
    def _quotas_mapping(cls, value: Any) -> Any:
        return _parse_mapping(value, "PRODUCT=QPS")

    @field_validator("quotas", mode="after")
    @classmethod
    def _merge_default_quotas(cls, value: dict[str, float]) -> dict[str, float]:
        for product, qps in value.items():
            if not math.isfinite(qps) or qps <= 0:
                raise ValueError(f"quota for {product} must be a finite number > 0, got {qps}")
        return {**DEFAULT_QUOTAS, **value}

    @field_validator("api_quotas", mode="after")
    @classmethod
    def _check_api_quotas(cls, value: dict[str, float]) -> dict[str, float]:
        for key, qps in value.items():
            if ":" not in key:
                raise ValueError(f"per-API quota key must be PRODUCT:Api, got {key!r}")
            if not math.isfinite(qps) or qps <= 0:
                raise ValueError(f"quota for {key} must be a finite number > 0, got {qps}")
        return value

    @field_validator("quota_margin_ceiling", mode="after")
    @classmethod
    def _margin_bounds(cls, value: float, info: ValidationInfo) -> float:
        floor = info.data.get("quota_margin_floor")
        if floor is not None and value < floor:
            raise ValueError(f"must be >= IDV_QUOTA_MARGIN_FLOOR ({floor})")
        return value

    @field_validator("callback_tokens", mode="before")
    @classmethod
    def _tokens_list(cls, value: Any) -> Any:
        return _parse_list(value)

    @field_validator("callback_path")
    @classmethod
    def _callback_path(cls, value: str) -> str:
        if not value.startswith("/") or any(c in value for c in "?# \t\n"):
            raise ValueError("must be a URL path starting with '/'")
        return value.rstrip("/") or "/"

    @field_validator("callback_url")
    @classmethod
    def _callback_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

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

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        text = str(value).strip().lower()
        if text not in MODES:
            raise ValueError(f"must be one of {', '.join(MODES)}, got {value!r}")
        return text

    @field_validator("signature_scheme")
    @classmethod
    def _scheme(cls, value: str) -> str:
        value = value.lower()
        if value not in {"acs3", "rpc"}:
            raise ValueError("must be 'acs3' or 'rpc'")
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not value or any(c in value for c in "{} \t\n"):
            raise ValueError("must be non-empty, without braces or whitespace")
        return value

    @field_validator("log_level", "log_format")
    @classmethod
    def _log_choice(cls, value: str, info: ValidationInfo) -> str:
        choices = LOG_LEVELS if info.field_name == "log_level" else LOG_FORMATS
        for choice in choices:
            if str(value).strip().lower() == choice.lower():
                return choice
        raise ValueError(f"must be one of {', '.join(choices)}, got {value!r}")

    @field_validator("s3_sse", "s3_verify_sse")
    @classmethod
    def _s3_choice(cls, value: str, info: ValidationInfo) -> str:
        choices = S3_SSE_MODES if info.field_name == "s3_sse" else S3_VERIFY_SSE_MODES
        text = str(value).strip()
        for choice in choices:
            if text.lower() == choice.lower():
                return choice
        raise ValueError(f"must be one of {', '.join(choices)}, got {value!r}")

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if value.startswith("sentinel://"):
            raise ValueError(_SENTINEL_URL)
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @model_validator(mode="after")
    def _cross_fields(self) -> Self:
        problems = self.cross_field_problems()
        if problems:
            raise CrossFieldError(problems)
        return self

    def cross_field_problems(self) -> list[tuple[str, str]]:
        """The rules between variables that this configuration breaks: (variable, why)."""
        p = ENV_PREFIX
        out: list[tuple[str, str]] = []
        has_secret = self.webhook_secret is not None and bool(
            self.webhook_secret.get_secret_value()
        )
        if self.webhook_url is not None and not has_secret:
            out.append(
                (p + "WEBHOOK_SECRET", "must be set when IDV_WEBHOOK_URL is (webhooks are signed)")
            )
        if has_secret and self.webhook_url is None:
            out.append(
                (p + "WEBHOOK_URL", "must be set when IDV_WEBHOOK_SECRET is (or unset the secret)")
            )
        longest = self.task_time_limit_s + MAX_COUNTDOWN_S
        if self.broker_visibility_timeout_s <= longest:
            out.append((
                p + "BROKER_VISIBILITY_TIMEOUT_S",
                f"must exceed IDV_TASK_TIME_LIMIT_S ({self.task_time_limit_s}) plus the "
                f"longest countdown ({MAX_COUNTDOWN_S:.0f}) = {_num(longest)}, else a message "
                "still waiting or running is delivered to a second worker",
            ))  # fmt: skip
        lease_floor = self.limiter_max_wait_s + self.read_timeout
        if self.batch_lease_s <= lease_floor:
            out.append((
                p + "BATCH_LEASE_S",
                f"must exceed IDV_LIMITER_MAX_WAIT_S ({_num(self.limiter_max_wait_s)}) plus "
                f"IDV_READ_TIMEOUT ({_num(self.read_timeout)}) = {_num(lease_floor)}, else a live "
                "worker's chunk is taken over while it waits for its slot or answer",
            ))  # fmt: skip
        if self.batch_chunk_budget_s >= self.task_time_limit_s:
            out.append((
                p + "BATCH_CHUNK_BUDGET_S",
                f"must be below IDV_TASK_TIME_LIMIT_S ({self.task_time_limit_s}): a chunk task "
                "hands its rest on before the hard limit kills it",
            ))  # fmt: skip
        if self.reconcile_after_s >= self.evidence_window_s:
            out.append((
                p + "RECONCILE_AFTER_S",
                f"must be below IDV_EVIDENCE_WINDOW_S ({_num(self.evidence_window_s)}): a flow "
                "without a callback must be polled while its evidence can still be had",
            ))  # fmt: skip
        if self.archive_margin_s >= self.provider_retention_s:
            out.append((
                p + "ARCHIVE_MARGIN_S",
                f"must be below IDV_PROVIDER_RETENTION_S ({_num(self.provider_retention_s)}), else "
                "archival's deadline lies before the flow",
            ))  # fmt: skip
        if self.flow_lifetime_s >= self.provider_retention_s:
            out.append((
                p + "FLOW_LIFETIME_S",
                f"must be below IDV_PROVIDER_RETENTION_S ({_num(self.provider_retention_s)}): the "
                "provider deletes a flow's result before it would be abandoned",
            ))  # fmt: skip
        if self.s3_stale_upload_age_s <= self.task_time_limit_s:
            out.append((
                p + "S3_STALE_UPLOAD_AGE_S",
                f"must exceed IDV_TASK_TIME_LIMIT_S ({self.task_time_limit_s}), else the sweep "
                "aborts uploads that a running task is still sending",
            ))  # fmt: skip
        written = [_key_folder(self.s3_prefix) + folder for folder in WORKER_FOLDERS]
        clash = [w for w in written if w.startswith(self.batch_import_prefix)]
        clash += [w for w in written if self.batch_import_prefix.startswith(w)]
        if clash:
            out.append((
                p + "BATCH_IMPORT_PREFIX",
                f"overlaps {clash[0]}, which the worker writes (IDV_S3_PREFIX "
                f"{self.s3_prefix!r}): manifests would read stored evidence and results back",
            ))  # fmt: skip
        if self.s3_kms_key_id and self.s3_sse != "aws:kms":
            out.append((
                p + "S3_KMS_KEY_ID",
                f"is set but IDV_S3_SSE is {self.s3_sse}: set IDV_S3_SSE=aws:kms or unset it",
            ))  # fmt: skip
        return out

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str | None) -> str | None:
        if value and value.startswith("sentinel://"):
            raise ValueError(_SENTINEL_URL + " (and leave IDV_BROKER_URL unset)")
        return value or None

    @field_validator("redis_sentinels", mode="before")
    @classmethod
    def _sentinels_list(cls, value: Any) -> Any:
        return _parse_list(value)

    @field_validator("redis_sentinels", mode="after")
    @classmethod
    def _sentinels(cls, value: list[str], info: ValidationInfo) -> list[str]:
        for entry in value:
            _sentinel_address(entry)
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
        return [_sentinel_address(entry) for entry in self.redis_sentinels]

    def quota_for(self, product_code: str, api: str) -> float:
        """QPS allowed for one API of a product (per-API override, else product quota)."""
        override = self.api_quotas.get(f"{product_code}:{api}")
        if override is not None:
            return override
        try:
            return self.quotas[product_code]
        except KeyError:
            raise KeyError(
                f"no quota configured for product {product_code!r}: set IDV_QUOTAS"
            ) from None


def load_settings(**overrides: Any) -> Settings:
    """Build ``Settings`` from the environment, turning validation errors into ``SettingsError``."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems: list[tuple[str, str]] = []
        for err in exc.errors():
            cause = (err.get("ctx") or {}).get("error")
            if isinstance(cause, CrossFieldError):
                problems.extend(cause.problems)
                continue
            field = str(err["loc"][0]) if err["loc"] else "?"
            problems.append((ENV_PREFIX + field.upper(), err["msg"]))
        raise SettingsError(problems) from None
