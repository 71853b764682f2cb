"""A real Celery worker keeps running across Redis restarts (graceful and crash) and goes on
consuming: with kombu's plain Redis transport under Celery 5.7 the node exits with
``AttributeError: 'NoneType' object has no attribute 'hostname'`` (see ``worker.broker``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.fixtures.workers import CeleryWorker
from worker.app import create_app
from worker.devtools import RedisServer, wait_until
from worker.observability import RedisMetrics
from worker.queues import QUEUE_WEBHOOKS, TASK_DELIVER
from worker.settings import load_settings

pytestmark = pytest.mark.slow


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", log=tmp_path / "redis.log").start()
    yield server
    server.stop()


def _delivered(client: redis.Redis) -> float:
    """Runs of the webhook task so far (shared metrics in Redis; AOF keeps them)."""
    snapshot = RedisMetrics(client).snapshot()
    return sum(
        value
        for series, value in snapshot.items()
        if series.startswith("idv_tasks_total") and 'flow="webhook"' in series and '"ok"' in series
    )


def _send(app: object, countdown: float | None = None) -> None:
    # No webhook is configured: the task finds nothing to send and ends "ok".
    deadline = time.monotonic() + 60
    while True:
        try:
            app.send_task(TASK_DELIVER, args=["tx-restart"], countdown=countdown)  # type: ignore[attr-defined]
            return
        except Exception:  # Redis still loading its AOF: publish again
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_worker_survives_graceful_and_crash_restarts(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    env = {"IDV_REDIS_URL": own_redis.url, "IDV_CALLBACK_TOKENS": "t"}
    worker = CeleryWorker(env, queues=[QUEUE_WEBHOOKS], name="restart", logfile=tmp_path / "w.log")
    worker.start()
    app = create_app(load_settings(redis_url=own_redis.url))
    client = redis.Redis.from_url(own_redis.url)
    try:
        worker.wait_ready(60)
        _send(app)
        wait_until(lambda: _delivered(client) >= 1, timeout=60, interval=0.2)
        for n, restart in enumerate((own_redis.shutdown, own_redis.crash), start=1):
            # Messages in flight: reserved by the worker, unacked until their countdown ends.
            for _ in range(3):
                _send(app, countdown=600)
            wait_until(lambda: client.hlen("unacked") >= 3, timeout=30, interval=0.2)
            before = _delivered(client)
            restart()
            time.sleep(1.0)
            own_redis.start()
            _send(app)
            wait_until(
                lambda b=before: not worker.alive() or _delivered(client) > b,
                timeout=120,
                interval=0.5,
            )
            assert worker.alive(), f"worker exited after restart {n}"
            assert _delivered(client) > before, f"nothing processed after restart {n}"
    finally:
        client.close()
        app.close()
        log = (tmp_path / "w.log").read_text(errors="replace")
        worker.stop()
    assert "Unrecoverable error" not in log
