"""Logging: one format (``IDV_LOG_FORMAT=text|json``) for our records and every library's.

``configure_logging`` installs one handler on the root logger, so Celery's, kombu's and
uvicorn's records come out like ours; every record passes the ``RedactingFilter`` (no URL query
strings, secrets or personal data). Libraries that log request lines (httpx logs
``HTTP Request: GET <url>`` at INFO) are held at WARNING whatever ``IDV_LOG_LEVEL`` says.

Celery: ``setup_logging`` is answered here, so a worker never installs its own format; if
Celery configured its loggers anyway (``after_setup_logger`` / ``after_setup_task_logger``),
their handlers get our formatter and filter.

Context ids (transaction, batch, item, task, …) set with ``log_context`` appear on every line
inside the block: ``key=value`` suffixes in text, top-level fields in JSON (``ts``, ``level``,
``logger``, ``msg`` first).
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import IO, Any

from celery import current_app, signals

from worker.observability.redaction import RedactingFilter, redact_text
from worker.settings import LOG_FORMATS, LOG_LEVELS, Settings, load_settings

# Never below these levels: at INFO/DEBUG they print request lines (URLs with signatures),
# headers or bodies.
PINNED_LEVELS: Mapping[str, int] = MappingProxyType(
    {
        "httpx": logging.WARNING,
        "httpcore": logging.WARNING,
        "urllib3": logging.WARNING,
        "botocore": logging.WARNING,
        "boto3": logging.WARNING,
        "s3transfer": logging.WARNING,
        "kombu": logging.WARNING,
        "amqp": logging.WARNING,
        "celery": logging.INFO,
        # "Task … succeeded in …s: <return value>" at INFO
        "celery.app.trace": logging.WARNING,
        "uvicorn.access": logging.WARNING,
    }
)

_log_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "idv_log_context", default=MappingProxyType({})
)
_RESERVED = ("ts", "level", "logger", "msg", "exc")


@contextmanager
def log_context(**fields: str) -> Iterator[None]:
    """Attach ``fields`` (ids, lane, flow — never PII) to every log line inside the block."""
    token = _log_context.set({**_log_context.get(), **fields})
    try:
        yield
    finally:
        _log_context.reset(token)


def current_log_context() -> Mapping[str, str]:
    return _log_context.get()


class TextFormatter(logging.Formatter):
    """``2024-05-01T12:00:00 INFO idv.x: message key=value ...``"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        ctx = _log_context.get()
        if not ctx:
            return base
        return base + " " + " ".join(f"{k}={redact_text(str(v))}" for k, v in sorted(ctx.items()))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts, level, logger, msg``, the context ids, ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        entry: dict[str, Any] = {
            "ts": ts.replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, val in sorted(_log_context.get().items()):
            entry[f"ctx_{key}" if key in _RESERVED else key] = redact_text(str(val))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


def check_level(level: str) -> str:
    """The upper-cased level; ``ValueError`` for anything else."""
    name = str(level).strip().upper()
    if name not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    return name


def check_format(fmt: str) -> str:
    name = str(fmt).strip().lower()
    if name not in LOG_FORMATS:
        raise ValueError(f"must be one of {', '.join(LOG_FORMATS)}, got {fmt!r}")
    return name


def make_formatter(fmt: str = "text") -> logging.Formatter:
    return JsonFormatter() if check_format(fmt) == "json" else TextFormatter()


def _dress(handler: logging.Handler, fmt: str) -> logging.Handler:
    handler.setFormatter(make_formatter(fmt))
    if not any(isinstance(f, RedactingFilter) for f in handler.filters):
        handler.addFilter(RedactingFilter())
    return handler


_state: dict[str, str] = {}


def configure_logging(
    level: str = "INFO", fmt: str = "text", *, stream: IO[str] | None = None
) -> logging.Handler:
    """Send every record (ours and the libraries') through one redacting handler on stderr."""
    level = check_level(level)
    handler = _dress(logging.StreamHandler(stream or sys.stderr), fmt)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    ours = logging.getLogger("idv")
    ours.handlers[:] = []
    ours.propagate = True
    ours.setLevel(level)
    numeric = logging.getLevelName(level)
    for name, floor in PINNED_LEVELS.items():
        logging.getLogger(name).setLevel(max(floor, numeric))
    for name in ("celery", "celery.task", "celery.redirected"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    _state.update(level=level, fmt=check_format(fmt))
    return handler


def logging_config(level: str = "INFO", fmt: str = "text") -> dict[str, Any]:
    """The same set-up as a ``logging.config.dictConfig`` mapping (uvicorn's ``log_config``)."""
    level = check_level(level)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": RedactingFilter}},
        "formatters": {"idv": {"()": make_formatter, "fmt": check_format(fmt)}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "idv",
                "filters": ["redact"],
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "idv": {"level": level, "propagate": True},
            **{
                name: {"level": max(floor, logging.getLevelName(level)), "handlers": []}
                for name, floor in PINNED_LEVELS.items()
            },
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
        },
    }


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"idv.{name}")


# ---------------------------------------------------------------- Celery


def _app_logging() -> tuple[str, str]:
    """Level and format of the Celery app being started (its settings, else the environment)."""
    settings = current_app.conf.get("idv_settings")
    if not isinstance(settings, Settings):
        settings = load_settings()
    return settings.observability.log_level, settings.observability.log_format


def _on_setup_logging(**_: Any) -> None:
    # Answering this signal is what stops Celery from installing its own handlers.
    configure_logging(*_app_logging())


def _on_after_setup(logger: logging.Logger | None = None, **_: Any) -> None:
    if logger is None:
        return
    fmt = _state.get("fmt") or _app_logging()[1]
    for handler in logger.handlers:
        _dress(handler, fmt)


def connect_celery_logging() -> None:
    """Hook Celery's logging signals (idempotent)."""
    signals.setup_logging.connect(_on_setup_logging, weak=False, dispatch_uid="idv.logging")
    signals.after_setup_logger.connect(_on_after_setup, weak=False, dispatch_uid="idv.logger")
    signals.after_setup_task_logger.connect(
        _on_after_setup, weak=False, dispatch_uid="idv.task_logger"
    )
