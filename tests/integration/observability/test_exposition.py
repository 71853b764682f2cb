"""The /metrics page over a real Redis: prometheus_client rendering, both parsers, families
at 0 from the start, queue depth and age of real Celery messages, gauge sources."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

import pytest
import redis
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from worker.app import create_app
from worker.observability import (
    FAMILIES,
    Family,
    MetricsExporter,
    QueueProbe,
    RedisMetrics,
    StoreCollector,
    register_gauge_source,
    unregister_gauge_source,
)
from worker.observability.exposition import render
from worker.queues import ALL_QUEUES, QUEUE_ARCHIVAL, QUEUE_BULK, QUEUE_REALTIME
from worker.settings import Settings, load_settings
from worker.wiring import build_exporter


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return load_settings(redis_url=redis_url)


@pytest.fixture
def exporter(settings: Settings) -> Iterator[MetricsExporter]:
    exp = build_exporter(settings)
    yield exp
    exp.close()


def _page(exporter: MetricsExporter, accept: str = "") -> str:
    return exporter.render(accept)[0].decode()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in parse_text(text)
        for s in family.samples
    }


def _value(text: str, name: str, **labels: str) -> float:
    return _samples(text)[(name, tuple(sorted(labels.items())))]


def test_page_parses_as_openmetrics_and_as_text(
    exporter: MetricsExporter, redis_client: redis.Redis
) -> None:
    metrics = RedisMetrics(redis_client)
    metrics.incr("idv_tasks", flow="batch", outcome="ok")
    metrics.observe("idv_task_seconds", 0.3, flow="batch")
    metrics.observe("idv_task_seconds", 42.0, flow="batch")
    metrics.gauge("limiter_rate_factor", 0.5, bucket="ID_OCR_MIN:DocOcrV2")

    om_text, content_type = exporter.render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    families = {f.name: f for f in parse_openmetrics(om_text.decode())}
    assert families["idv_tasks"].type == "counter"
    assert families["idv_task_seconds"].type == "histogram"
    assert families["idv_limiter_rate_factor"].type == "gauge"

    text = _page(exporter)
    plain = list(parse_text(text))
    assert {f.name for f in plain} >= {"idv_tasks", "idv_task_seconds", "idv_queue_length"}
    for family in plain:
        assert family.name.startswith("idv_"), family.name
        assert not family.name.startswith("idv_idv_"), family.name
        assert family.documentation, family.name
        assert family.type in {"counter", "gauge", "histogram"}, family.name
    helps = {line.split()[2] for line in text.splitlines() if line.startswith("# HELP")}
    types = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert helps == types


def test_values_keep_full_precision(exporter: MetricsExporter, redis_client: redis.Redis) -> None:
    metrics = RedisMetrics(redis_client)
    metrics.incr("idv_evidence_bytes", 1234567.891, kind="video")
    metrics.incr("idv_batch_items", 1000012, outcome="done")
    text = _page(exporter)
    assert _value(text, "idv_evidence_bytes_total", kind="video") == 1234567.891
    assert _value(text, "idv_batch_items_total", outcome="done") == 1000012
    # what the hand-written "%g" rendering printed: 6 significant digits
    assert "1.00001e+06" not in text
    assert "1.23457e+06" not in text


def test_histogram_buckets_in_numeric_order_and_consistent(
    exporter: MetricsExporter, redis_client: redis.Redis
) -> None:
    metrics = RedisMetrics(redis_client)
    for value in (0.004, 0.2, 3.0, 700.0, 5000.0):
        metrics.observe("idv_callback_ack_seconds", value, outcome="accepted")
    text = _page(exporter)
    bounds = [
        line.split('le="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("idv_callback_ack_seconds_bucket{") and 'outcome="accepted"' in line
    ]  # every other outcome is shown at 0
    assert len(bounds) == 16
    assert bounds[-1] == "+Inf"
    numeric = [float(b) for b in bounds]
    assert numeric == sorted(numeric)
    assert len(set(numeric)) == len(numeric)
    assert _value(text, "idv_callback_ack_seconds_bucket", outcome="accepted", le="0.005") == 1
    assert _value(text, "idv_callback_ack_seconds_bucket", outcome="accepted", le="900.0") == 4
    assert _value(text, "idv_callback_ack_seconds_bucket", outcome="accepted", le="+Inf") == 5
    assert _value(text, "idv_callback_ack_seconds_count", outcome="accepted") == 5
    assert _value(text, "idv_callback_ack_seconds_sum", outcome="accepted") == pytest.approx(
        5703.204
    )


def test_alerting_series_exist_at_zero_before_any_event(exporter: MetricsExporter) -> None:
    text = _page(exporter)
    assert _value(text, "idv_tasks_total", flow="onboarding", outcome="error") == 0
    assert _value(text, "idv_dead_letters_total", kind="onboarding") == 0
    assert _value(text, "idv_dead_letters_total", kind="batch-chunk") == 0
    code = "Forbidden.RAMUserAccessDenied"
    assert _value(text, "idv_account_errors_total", flow="batch", code=code) == 0
    assert _value(text, "idv_onboarding_total", outcome="evidence_lost") == 0
    assert _value(text, "idv_webhooks_total", outcome="failed") == 0
    assert _value(text, "idv_callbacks_total", outcome="forbidden") == 0
    assert _value(text, "idv_evidence_lost_total", kind="video") == 0
    assert _value(text, "idv_limiter_throttled_total", bucket="ID_OCR_MIN:DocOcrV2") == 0
    assert _value(text, "idv_limiter_unavailable_total", bucket="eKYC:CheckResult") == 0
    assert _value(text, "idv_task_seconds_count", flow="onboarding") == 0
    for queue in ALL_QUEUES:
        assert _value(text, "idv_queue_length", queue=queue) == 0
        assert _value(text, "idv_queue_oldest_age_seconds", queue=queue) == 0


def test_unprefixed_names_are_stored_and_shown_in_the_idv_namespace(
    exporter: MetricsExporter, redis_client: redis.Redis
) -> None:
    RedisMetrics(redis_client).incr("limiter_throttled", bucket="eKYC:CheckResult")
    # a series written by an older release, before names were prefixed
    redis_client.hset(
        "idv:metrics:counters", 'limiter_throttled_total{bucket="eKYC:CheckResult"}', 2
    )
    text = _page(exporter)
    assert _value(text, "idv_limiter_throttled_total", bucket="eKYC:CheckResult") == 3
    assert "\nlimiter_" not in text


def test_queue_depth_and_oldest_age_from_real_celery_messages(
    settings: Settings, redis_client: redis.Redis
) -> None:
    app = create_app(settings)
    before = time.time()
    app.send_task("idv.onboarding.process", args=["hk1"])
    app.send_task("idv.batch.process_chunk", args=["b", 0])
    app.send_task("idv.batch.process_chunk", args=["b", 1], priority=5)  # a priority sub-queue
    redis_client.lpush(QUEUE_ARCHIVAL, json.dumps({"body": "", "headers": {}}))  # no stamp
    # Not app.pool.force_close_all(): kombu's connection pools are shared by every app of the
    # process with the same broker URL, and a closed one breaks the next app's send_task.
    app.close()

    probe = QueueProbe(redis_client, ALL_QUEUES, clock=lambda: before + 100)
    stats = {s.queue: s for s in probe.read()}
    assert stats[QUEUE_REALTIME].length == 1
    assert stats[QUEUE_BULK].length == 2
    assert stats[QUEUE_ARCHIVAL].length == 1
    assert stats[QUEUE_ARCHIVAL].oldest_age_s is None
    for queue in (QUEUE_REALTIME, QUEUE_BULK):
        age = stats[queue].oldest_age_s
        assert age is not None
        assert 90 < age <= 100

    text = render(StoreCollector(RedisMetrics(redis_client), queues=probe))[0].decode()
    assert _value(text, "idv_queue_length", queue=QUEUE_BULK) == 2
    assert 95 < _value(text, "idv_queue_oldest_age_seconds", queue=QUEUE_REALTIME) <= 100
    assert ("idv_queue_oldest_age_seconds", (("queue", QUEUE_ARCHIVAL),)) not in _samples(text)


def test_gauge_sources_are_shown_and_a_failing_one_is_skipped(
    exporter: MetricsExporter, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The family registry is the process's: this test's family must not outlive it (the
    # metrics reference is generated from the registry in the same process).
    monkeypatch.setattr(FAMILIES, "_families", dict(FAMILIES._families))
    family = Family("idv_ledger_overdue", "gauge", "Transactions past due.", ("lane",), zero=False)

    def overdue() -> list[tuple[str, dict[str, str], float]]:
        return [("idv_ledger_overdue", {"lane": "archival"}, 7.0)]

    def broken() -> list[tuple[str, dict[str, str], float]]:
        raise RuntimeError("ledger down")

    register_gauge_source(overdue, family)
    register_gauge_source(broken)
    try:
        with caplog.at_level(logging.WARNING, logger="idv.metrics"):
            text = _page(exporter)
    finally:
        unregister_gauge_source(overdue)
        unregister_gauge_source(broken)
    assert _value(text, "idv_ledger_overdue", lane="archival") == 7
    assert "# HELP idv_ledger_overdue Transactions past due." in text
    assert [r.getMessage() for r in caplog.records] == [
        "gauge source test_gauge_sources_are_shown_and_a_failing_one_is_skipped.<locals>.broken "
        "failed: RuntimeError"
    ]


def test_json_has_every_family_with_type_help_and_samples(
    exporter: MetricsExporter, redis_client: redis.Redis
) -> None:
    RedisMetrics(redis_client).incr("idv_webhooks", outcome="delivered")
    families = {f["name"]: f for f in exporter.as_json()["families"]}
    webhooks = families["idv_webhooks"]
    assert webhooks["type"] == "counter"
    assert webhooks["help"]
    delivered = [s for s in webhooks["samples"] if s["labels"] == {"outcome": "delivered"}]
    assert delivered == [
        {"name": "idv_webhooks_total", "labels": {"outcome": "delivered"}, "value": 1.0}
    ]
    assert families["idv_queue_length"]["type"] == "gauge"
