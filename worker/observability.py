"""Logging, metrics and Sentry — with PII kept out of all three.

* Logs: ``key=value`` lines carrying the task context (task id, lane, flow, object id).
* Metrics: counters and histograms kept in Redis (one hash per namespace) so every worker
  process on every host adds to the same series; rendered in the Prometheus text format by
  ``GET /metrics`` on the receiver and by ``idv-worker metrics``. Label values are checked
  against a strict charset and a closed set of label names, so an ID number or URL can never
  become a label.
* Sentry: optional (``IDV_SENTRY_DSN``); ``send_default_pii`` off and a ``before_send`` hook
  that redacts fields known to carry PII, presigned URLs and secrets.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any, Protocol

import redis

from worker.settings import Settings

# ---------------------------------------------------------------- logging

_log_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "idv_log_context", default=MappingProxyType({})
)


@contextmanager
def log_context(**fields: str) -> Iterator[None]:
    """Attach ``fields`` (ids, lane, flow — never PII) to every log line inside the block."""
    token = _log_context.set({**_log_context.get(), **fields})
    try:
        yield
    finally:
        _log_context.reset(token)


class _ContextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        ctx = _log_context.get()
        if not ctx:
            return base
        return base + " " + " ".join(f"{k}={v}" for k, v in sorted(ctx.items()))


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _ContextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    root = logging.getLogger("idv")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"idv.{name}")


# ---------------------------------------------------------------- metrics

ALLOWED_LABELS = frozenset(
    {"lane", "product", "api", "code", "outcome", "kind", "queue", "reason", "flow", "bucket", "le"}
)
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9_.:+\-]{0,64}$")
_METRIC_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)


class Metrics(Protocol):
    def incr(self, name: str, value: float = 1, **labels: str) -> None: ...

    def observe(self, name: str, value: float, **labels: str) -> None: ...

    def gauge(self, name: str, value: float, **labels: str) -> None: ...


def _series(name: str, labels: Mapping[str, str]) -> str:
    if not _METRIC_NAME.match(name):
        raise ValueError(f"bad metric name {name!r}")
    for key, val in labels.items():
        if key not in ALLOWED_LABELS:
            raise ValueError(f"label {key!r} is not an allowed metric label")
        if not _LABEL_VALUE.match(val):
            raise ValueError(f"label {key} has a value that is not a safe identifier")
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}" if inner else name


class NullMetrics:
    """Drops everything (unit tests of pure logic, tools)."""

    def incr(self, name: str, value: float = 1, **labels: str) -> None:
        _series(name, labels)

    def observe(self, name: str, value: float, **labels: str) -> None:
        _series(name, labels)

    def gauge(self, name: str, value: float, **labels: str) -> None:
        _series(name, labels)


class RedisMetrics:
    """Counters, gauges and histograms shared by all processes, stored in Redis hashes.

    A metric write never fails the work it measures: Redis errors are swallowed (and logged
    once at debug level), the limiter and stores already fail loudly on their own.
    """

    def __init__(self, client: redis.Redis, namespace: str = "idv:") -> None:
        self._r = client
        self._counters = f"{namespace}metrics:counters"
        self._gauges = f"{namespace}metrics:gauges"

    def incr(self, name: str, value: float = 1, **labels: str) -> None:
        key = _series(name + "_total", labels)
        try:
            self._r.hincrbyfloat(self._counters, key, value)
        except redis.RedisError:
            get_logger("metrics").debug("metric write failed", exc_info=True)

    def gauge(self, name: str, value: float, **labels: str) -> None:
        try:
            self._r.hset(self._gauges, _series(name, labels), str(value))
        except redis.RedisError:
            get_logger("metrics").debug("metric write failed", exc_info=True)

    def observe(self, name: str, value: float, **labels: str) -> None:
        pipe = self._r.pipeline(transaction=False)
        bounds = [str(b) for b in DEFAULT_BUCKETS if value <= b] + ["+Inf"]
        for bound in bounds:
            pipe.hincrbyfloat(self._counters, _series(name + "_bucket", {**labels, "le": bound}), 1)
        pipe.hincrbyfloat(self._counters, _series(name + "_sum", labels), value)
        pipe.hincrbyfloat(self._counters, _series(name + "_count", labels), 1)
        try:
            pipe.execute()
        except redis.RedisError:
            get_logger("metrics").debug("metric write failed", exc_info=True)

    def snapshot(self) -> dict[str, float]:
        """All series and their values (counters and gauges)."""
        out: dict[str, float] = {}
        for key in (self._counters, self._gauges):
            raw: dict[bytes, bytes] = self._r.hgetall(key)  # type: ignore[assignment]
            for series, val in raw.items():
                out[series.decode()] = float(val)
        return out

    def render_prometheus(self) -> str:
        """Prometheus text exposition of every series."""
        lines = []
        types: dict[str, str] = {}
        snap = self.snapshot()
        for series in sorted(snap):
            base = series.split("{", 1)[0]
            family = re.sub(r"_(bucket|sum|count)$", "", base)
            if family not in types:
                kind = "counter" if base.endswith("_total") else "gauge"
                if base != family:
                    kind = "histogram"
                types[family] = kind
                lines.append(f"# TYPE {family} {kind}")
            lines.append(f"{series} {snap[series]:g}")
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- sentry

_PII_KEYS = re.compile(
    r"(name|idnumber|passport|birth|address|image|img|photo|picture|base64|video|url|token|"
    r"secret|password|signature|authorization|cookie|mobile|email|ocr)",
    re.IGNORECASE,
)
_URL_QUERY = re.compile(r"(https?://[^\s?\"']+)\?[^\s\"']*")
REDACTED = "[redacted]"


def scrub(value: Any, depth: int = 0) -> Any:
    """Redact PII-bearing keys and URL query strings (presigned links) from any structure."""
    if depth > 12:
        return REDACTED
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if isinstance(k, str) and _PII_KEYS.search(k) else scrub(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [scrub(v, depth + 1) for v in value]
    if isinstance(value, str):
        return _URL_QUERY.sub(r"\1?" + REDACTED, value)
    return value


def _before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    event.pop("request", None)
    event.pop("user", None)
    return dict(scrub(event))


def init_sentry(settings: Settings) -> bool:
    """Initialise Sentry if a DSN is configured; returns whether it is active."""
    if settings.sentry_dsn is None:
        return False
    import sentry_sdk  # imported here: Sentry stays optional at run time

    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        send_default_pii=False,
        include_local_variables=False,
        max_request_body_size="never",
        before_send=_before_send,  # type: ignore[arg-type]
        traces_sample_rate=0.0,
    )
    return True


def report_to_sentry(message: str, *, level: str = "error", **tags: str) -> None:
    """Send a message event (tags are ids and codes only); a no-op when Sentry is off."""
    import sentry_sdk

    if not sentry_sdk.get_client().is_active():
        return
    with sentry_sdk.new_scope() as scope:
        for key, val in tags.items():
            scope.set_tag(key, val)
        sentry_sdk.capture_message(message, level=level)  # type: ignore[arg-type]
