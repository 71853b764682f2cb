"""The receiver on a real Redis: concurrent duplicates, the CLI commands around it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from celery import Celery
from pydantic import SecretStr

from tests.fixtures.e2e import run_cli
from worker.app import create_app
from worker.queues import QUEUE_REALTIME
from worker.receiver import CallbackReceiver
from worker.settings import Settings, load_settings

TOKEN = "tok-http-0001"


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return load_settings(redis_url=redis_url, callback_tokens=[SecretStr(TOKEN)])


@pytest.fixture
def celery_app(settings: Settings) -> Celery:
    return create_app(settings)


@pytest.fixture
def receiver(settings: Settings, celery_app: Celery) -> Iterator[CallbackReceiver]:
    app = CallbackReceiver(settings, celery=celery_app, threads=8)
    app.startup()
    yield app
    app.shutdown()


@pytest.mark.anyio
async def test_concurrent_repeats_enqueue_exactly_once(
    receiver: CallbackReceiver, redis_client: redis.Redis
) -> None:
    params = {"transactionId": "hkconcurrent01", "passed": "N", "subCode": "205",
              "callbackToken": TOKEN}  # fmt: skip
    transport = httpx.ASGITransport(app=receiver)
    async with httpx.AsyncClient(transport=transport, base_url="http://r") as client:
        replies = await asyncio.gather(*(client.get("/callback", params=params) for _ in range(40)))
    statuses = [r.json()["status"] for r in replies]
    assert all(r.status_code == 200 for r in replies)
    assert statuses.count("accepted") == 1
    assert statuses.count("duplicate") == 39
    # Exactly one message waits on the realtime queue (kombu's Redis list of that name).
    assert redis_client.llen(QUEUE_REALTIME) == 1


def test_metrics_command_prints_prometheus_text(receiver: CallbackReceiver, redis_url: str) -> None:
    async def refused() -> None:
        transport = httpx.ASGITransport(app=receiver)
        async with httpx.AsyncClient(transport=transport, base_url="http://r") as client:
            await client.get("/callback", params={"transactionId": "x", "callbackToken": "no"})

    asyncio.run(refused())
    out = run_cli("metrics", env={"IDV_REDIS_URL": redis_url})
    assert out.returncode == 0, out.stderr
    assert "# TYPE idv_callbacks_total counter" in out.stdout
    assert 'idv_callbacks_total{outcome="forbidden"} 1' in out.stdout


def test_receiver_command_refuses_to_start_without_tokens(redis_url: str) -> None:
    out = run_cli("receiver", "--port", "0", env={"IDV_REDIS_URL": redis_url,
                                                  "IDV_CALLBACK_TOKENS": ""})  # fmt: skip
    assert out.returncode == 2
    assert "IDV_CALLBACK_TOKENS" in out.stderr


def test_replay_reports_rejected_lines(redis_url: str, tmp_path: Any) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(
        '{"transactionId": "hkreplay01", "passed": "Y", "subCode": "200", "callbackToken": "t"}\n'
        "not json\n"
        '{"query": "transactionId=hkreplay02&passed=Y&subCode=200&callbackToken=t"}\n'
        '{"transactionId": "bad id", "passed": "Y", "subCode": "200", "callbackToken": "t"}\n'
    )
    out = run_cli("callbacks", "replay", str(path),
                  env={"IDV_REDIS_URL": redis_url, "IDV_CALLBACK_TOKENS": "t"})  # fmt: skip
    assert out.returncode == 1
    assert out.stdout.strip().endswith('{"accepted": 2, "duplicate": 0, "rejected": 2}')
    assert "line 2: not JSON" in out.stderr
    assert "line 4: 400" in out.stderr
    assert redis.Redis.from_url(redis_url).llen(QUEUE_REALTIME) == 2
