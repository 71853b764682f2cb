"""``idv_lane_desired_workers`` on a live scrape: the broker's queues, the messages workers
hold, the ledger's overdue work and the quota, read from a real Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families as parse_text

from worker.observability import MetricsExporter
from worker.queues import QUEUE_ARCHIVAL, QUEUE_REALTIME, QUEUE_WEBHOOKS
from worker.settings import Settings, load_settings
from worker.wiring import build_exporter


@pytest.fixture
def settings(redis_url: str) -> Settings:
    base = load_settings(redis_url=redis_url)
    product = base.onboarding.onboarding_product
    return base.replace(
        quotas={product: 10.0},
        quota_safety_margin=0.0,
        worker_concurrency={"realtime": 4, "webhooks": 2, "archival": 1, "bulk": 4},
    )


@pytest.fixture
def exporter(settings: Settings) -> Iterator[MetricsExporter]:
    exp = build_exporter(settings)
    yield exp
    exp.close()


def _desired(exporter: MetricsExporter) -> dict[str, float]:
    text = exporter.render()[0].decode()
    return {
        s.labels["lane"]: s.value
        for family in parse_text(text)
        if family.name == "idv_lane_desired_workers"
        for s in family.samples
    }


def _push(client: redis.Redis, queue: str, n: int) -> None:
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        pipe.lpush(queue, json.dumps({"body": str(i), "headers": {}}))
    pipe.execute()


def test_an_idle_system_wants_no_workers(exporter: MetricsExporter) -> None:
    assert _desired(exporter) == {"realtime": 0, "webhooks": 0, "archival": 0, "bulk": 0}


def test_a_small_backlog_meets_its_deadline_with_few_workers(
    exporter: MetricsExporter, redis_client: redis.Redis
) -> None:
    # 45 webhooks of 0.5 s in 60 s: 1 process; 300: 3 processes = 2 pods of 2.
    _push(redis_client, QUEUE_WEBHOOKS, 45)
    assert _desired(exporter)["webhooks"] == 1
    _push(redis_client, QUEUE_WEBHOOKS, 255)
    assert _desired(exporter)["webhooks"] == 2


def test_a_large_backlog_is_capped_by_the_quota(
    exporter: MetricsExporter, redis_client: redis.Redis
) -> None:
    # 5,000 flows of 2 s in 60 s would need 167 processes; 10 calls/s x 2 s keeps 20 busy.
    _push(redis_client, QUEUE_REALTIME, 5000)
    assert _desired(exporter)["realtime"] == 5  # 20 processes, 4 per pod


def test_held_messages_and_overdue_ledger_work_count(
    exporter: MetricsExporter, redis_client: redis.Redis, settings: Settings
) -> None:
    assert _desired(exporter)["archival"] == 0
    # A message a worker holds (reserved, running or delayed): invisible to LLEN.
    message = json.dumps([{"body": "", "headers": {}}, "", QUEUE_ARCHIVAL])
    redis_client.hset("unacked", "tag-1", message)
    assert _desired(exporter)["archival"] == 1
    redis_client.hdel("unacked", "tag-1")
    # Archival due in the ledger (the reconciler re-drives it): 7,200 items of 1 s in an
    # hour need 2 processes; archival gets half the quota (5/s x 1 s = 5 processes).
    ns = settings.redis.namespace
    due = f"{ns}{{ledger}}:due:ar"
    redis_client.zadd(due, {f"tx{i}": 1.0 for i in range(7200)})
    assert _desired(exporter)["archival"] == 2
    redis_client.zadd(due, {f"late{i}": 4e9 for i in range(50_000)})  # not due yet: not counted
    assert _desired(exporter)["archival"] == 2
