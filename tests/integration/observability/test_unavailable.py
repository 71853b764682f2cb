"""An unreachable or hung Redis: /metrics answers 503 and the command exits 1, each with one
line and no traceback, within the configured timeout."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.e2e import run_cli
from worker.app import create_app
from worker.observability import MetricsUnavailable
from worker.receiver import CallbackReceiver
from worker.settings import load_settings
from worker.wiring import build_exporter


@pytest.fixture
def hung_url() -> Iterator[str]:
    """A server that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@pytest.fixture
def closed_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def test_a_hung_redis_costs_the_timeout_not_a_hang(hung_url: str) -> None:
    exporter = build_exporter(load_settings(redis_url=hung_url, metrics_timeout_s=0.3))
    started = time.monotonic()
    with pytest.raises(MetricsUnavailable, match="Redis unavailable"):
        exporter.render()
    assert time.monotonic() - started < 2.0
    exporter.close()


@pytest.mark.anyio
async def test_metrics_route_answers_503_with_one_log_line(
    closed_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(
        redis_url=closed_url,
        broker_url="memory://",
        metrics_timeout_s=0.3,
        metrics_on_callback_port=True,
    )
    receiver = CallbackReceiver(settings, celery=create_app(settings), threads=2)
    receiver.startup()
    try:
        caplog.clear()
        with caplog.at_level(logging.INFO):
            transport = httpx.ASGITransport(app=receiver)
            async with httpx.AsyncClient(transport=transport, base_url="http://r") as client:
                response = await client.get("/metrics")
    finally:
        receiver.shutdown()
    assert response.status_code == 503
    assert response.text.startswith("Redis unavailable")
    ours = [r for r in caplog.records if r.name.startswith("idv.")]
    assert [(r.name, r.levelname) for r in ours] == [("idv.receiver", "WARNING")]
    assert ours[0].exc_info is None
    assert ours[0].getMessage() == "metrics unavailable: Redis unavailable (ConnectionError)"


@pytest.mark.parametrize("extra", [[], ["--json"]])
def test_command_exits_1_with_one_line(hung_url: str, extra: list[str]) -> None:
    started = time.monotonic()
    out = run_cli(
        "metrics", *extra, env={"IDV_REDIS_URL": hung_url, "IDV_METRICS_TIMEOUT_S": "0.3"}
    )
    assert out.returncode == 1
    assert out.stdout == ""
    assert out.stderr.count("\n") == 1
    assert out.stderr.startswith(
        f"idv-worker metrics: Redis unreachable at {hung_url} (TimeoutError)"
    )
    assert time.monotonic() - started < 20


def test_command_prints_openmetrics_and_json(redis_url: str) -> None:
    env = {"IDV_REDIS_URL": redis_url}
    om = run_cli("metrics", "--openmetrics", env=env)
    assert om.returncode == 0, om.stderr
    assert om.stdout.rstrip().endswith("# EOF")
    assert "# TYPE idv_tasks counter" in om.stdout
    js = run_cli("metrics", "--json", env=env)
    assert js.returncode == 0, js.stderr
    names = {f["name"] for f in json.loads(js.stdout)["families"]}
    assert {"idv_tasks", "idv_queue_length", "idv_limiter_throttled"} <= names
