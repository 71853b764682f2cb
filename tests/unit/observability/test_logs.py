"""One log format for our records and Celery's/kombu's, context ids, validated settings."""

from __future__ import annotations

import io
import json
import logging

import pytest

from worker.app import create_app
from worker.observability import configure_logging, get_logger, log_context
from worker.observability.logs import PINNED_LEVELS, JsonFormatter
from worker.observability.redaction import RedactingFilter
from worker.settings import SettingsError, load_settings


def _lines(buf: io.StringIO) -> list[str]:
    return [line for line in buf.getvalue().splitlines() if line]


def test_json_lines_carry_context_ids_for_ours_and_the_libraries() -> None:
    buf = io.StringIO()
    configure_logging("INFO", "json", stream=buf)
    with log_context(transaction="hk01", batch="b7", item="42", task="idv.onboarding.process"):
        get_logger("onboarding").info("fetched %s", "result")
        logging.getLogger("kombu.connection").warning("reconnecting")
        logging.getLogger("celery.worker.strategy").info("Task received")
    get_logger("x").debug("not shown at INFO")
    entries = [json.loads(line) for line in _lines(buf)]
    assert [e["logger"] for e in entries] == [
        "idv.onboarding",
        "kombu.connection",
        "celery.worker.strategy",
    ]
    first = entries[0]
    assert list(first)[:4] == ["ts", "level", "logger", "msg"]
    assert first["msg"] == "fetched result"
    assert first["level"] == "INFO"
    assert first["ts"].endswith("Z")
    for entry in entries:
        assert (entry["transaction"], entry["batch"], entry["item"], entry["task"]) == (
            "hk01", "b7", "42", "idv.onboarding.process",
        )  # fmt: skip


def test_text_lines_end_with_the_context() -> None:
    buf = io.StringIO()
    configure_logging("INFO", "text", stream=buf)
    with log_context(transaction="hk01", task="idv.webhook.deliver"):
        get_logger("webhook").warning("delivery failed")
    (line,) = _lines(buf)
    assert " WARNING idv.webhook: delivery failed " in line
    assert line.endswith("task=idv.webhook.deliver transaction=hk01")


def test_request_logging_libraries_are_held_at_warning_even_at_debug() -> None:
    buf = io.StringIO()
    configure_logging("DEBUG", "text", stream=buf)
    for name in ("httpx", "httpcore", "botocore", "boto3", "urllib3", "s3transfer", "kombu"):
        logging.getLogger(name).info("HTTP Request: GET https://x/y")
        assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING
    assert PINNED_LEVELS["celery.app.trace"] == logging.WARNING
    assert _lines(buf) == []


def test_exceptions_are_redacted_too() -> None:
    buf = io.StringIO()
    configure_logging("INFO", "json", stream=buf)
    try:
        raise ValueError("GET https://oss/x.mp4?Expires=1&Signature=SECRETMARKER failed")
    except ValueError:
        get_logger("evidence").exception("download failed for name=Zhang San")
    (line,) = _lines(buf)
    assert "SECRETMARKER" not in line
    assert "Zhang" not in line
    entry = json.loads(line)
    assert entry["msg"] == "download failed for name=<redacted>"
    assert "x.mp4?<redacted> failed" in entry["exc"]


def test_celery_does_not_install_its_own_format(capsys: pytest.CaptureFixture[str]) -> None:
    app = create_app(load_settings(broker_url="memory://", log_format="json"))
    app.log.already_setup = False
    app.log.setup_logging_subsystem(loglevel="INFO")
    root = logging.getLogger()
    assert len(root.handlers) == 1
    assert isinstance(root.handlers[0].formatter, JsonFormatter)
    assert any(isinstance(f, RedactingFilter) for f in root.handlers[0].filters)
    logging.getLogger("celery.worker.consumer").info("Connected to redis://:pw@host:6379/0")
    entry = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert entry["logger"] == "celery.worker.consumer"
    assert entry["msg"] == "Connected to redis://:<redacted>@host:6379/0"


def test_loggers_celery_configured_itself_get_our_format_and_filter() -> None:
    from celery import signals

    configure_logging("INFO", "json", stream=io.StringIO())
    task_logger = logging.getLogger("celery.task.test")
    handler = logging.StreamHandler(io.StringIO())
    task_logger.handlers[:] = [handler]
    try:
        signals.after_setup_task_logger.send(sender=None, logger=task_logger)
        assert isinstance(handler.formatter, JsonFormatter)
        assert any(isinstance(f, RedactingFilter) for f in handler.filters)
    finally:
        task_logger.handlers[:] = []


def test_log_settings_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDV_LOG_LEVEL", "VERBOSE")
    monkeypatch.setenv("IDV_LOG_FORMAT", "xml")
    with pytest.raises(SettingsError) as info:
        load_settings()
    problems = dict(info.value.problems)
    assert sorted(problems) == ["IDV_LOG_FORMAT", "IDV_LOG_LEVEL"]
    assert "'VERBOSE'" in problems["IDV_LOG_LEVEL"]
    assert "DEBUG, INFO, WARNING, ERROR" in problems["IDV_LOG_LEVEL"]
    assert "'xml'" in problems["IDV_LOG_FORMAT"]


def test_log_settings_accept_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDV_LOG_LEVEL", "warning")
    monkeypatch.setenv("IDV_LOG_FORMAT", "JSON")
    settings = load_settings().observability
    assert (settings.log_level, settings.log_format) == ("WARNING", "json")


def test_uvicorn_log_config_is_the_same_setup() -> None:
    import logging.config

    from worker.observability import logging_config

    logging.config.dictConfig(logging_config("INFO", "json"))
    (handler,) = logging.getLogger().handlers
    assert isinstance(handler.formatter, JsonFormatter)
    assert any(isinstance(f, RedactingFilter) for f in handler.filters)
    assert logging.getLogger("httpx").level == logging.WARNING
