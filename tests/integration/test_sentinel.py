"""Redis high availability: a primary (AOF), a replica and a real sentinel; a real Celery
worker configured with ``IDV_REDIS_SENTINELS`` consumes tasks while the test writes ledger
entries through a CLI builder (``Cli``); the primary is SIGKILLed mid-run, the sentinel promotes the
replica, and the same worker (never restarted) finishes the work on the promoted replica.

What a failover may lose is what asynchronous replication had not yet sent to the replica
(AOF ``everysec`` does not matter here: the dead primary's disk is never read again). The test
counts it instead of assuming it is zero: task messages published (``send_task`` returned) and
never run, and ledger writes acknowledged and missing on the new primary. Every ledger entry
that is there is due for the reconciler, which re-drives whatever its message lost.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis

from tests.fixtures.workers import CeleryWorker
from worker.devtools import RedisServer, SentinelServer, wait_until
from worker.keys import KIND_TX
from worker.queues import QUEUE_WEBHOOKS, TASK_DELIVER
from worker.redisio import ReconnectingConnection, broker_target, connect, redis_target
from worker.settings import load_settings
from worker.wiring import Cli

MASTER = "idv-primary"


class HA:
    def __init__(self, tmp_path: Path) -> None:
        self.primary = RedisServer(tmp_path / "primary", log=tmp_path / "primary.log")
        self.primary.start()
        self.replica = RedisServer(
            tmp_path / "replica", log=tmp_path / "replica.log", replica_of=self.primary.port
        ).start()
        self.sentinel = SentinelServer(
            tmp_path / "sentinel", MASTER, self.primary.port, log=tmp_path / "sentinel.log"
        ).start()

    def env(self) -> dict[str, str]:
        # The host of IDV_REDIS_URL is never used: only its database (and password, if any).
        return {
            "IDV_REDIS_URL": "redis://unused.invalid/0",
            "IDV_REDIS_SENTINELS": self.sentinel.address,
            "IDV_REDIS_SENTINEL_MASTER": MASTER,
        }

    def close(self) -> None:
        self.sentinel.stop()
        self.replica.stop()
        self.primary.stop()


@pytest.fixture
def ha(tmp_path: Path) -> Iterator[HA]:
    servers = HA(tmp_path)
    try:
        wait_until(
            lambda: servers.replica.in_sync() and servers.sentinel.replicas() >= 1,
            timeout=30,
            interval=0.1,
        )
        yield servers
    finally:
        servers.close()


class Witness:
    """The webhook endpoint: the work's outcome recorded outside the Redis under test."""

    def __init__(self) -> None:
        self.runs: dict[str, int] = {}
        self.at: dict[str, float] = {}
        witness = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                tid = json.loads(body)["data"]["transaction_id"]
                witness.runs[tid] = witness.runs.get(tid, 0) + 1
                witness.at.setdefault(tid, time.monotonic())
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Producer:
    """Per transaction ``tx-ha-<n>``: a ledger entry, a result record, and the webhook task
    that posts it; remembers what was acknowledged (the call returned)."""

    def __init__(self, runtime: Cli) -> None:
        self.runtime = runtime
        self.sent: dict[str, float] = {}
        self.ledger: set[str] = set()
        self.records: set[str] = set()
        self.errors = 0

    def one(self, n: int, *, patience_s: float = 60) -> None:
        tid = f"tx-ha-{n:04d}"
        deadline = time.monotonic() + patience_s
        while tid not in self.sent:
            try:
                if tid not in self.ledger:
                    self.runtime.ledger.record_start(tid, "eKYC", f"m-{n}")
                    self.ledger.add(tid)
                if tid not in self.records:
                    record = {"transaction_id": tid, "status": "ok", "checked_at": n}
                    self.runtime.results.put_record(KIND_TX, tid, record)
                    self.records.add(tid)
                self.runtime.app.send_task(TASK_DELIVER, args=[tid], task_id=f"ha-{n:04d}")
                self.sent[tid] = time.monotonic()
            except Exception:  # the failover: the same write again, on the new primary
                self.errors += 1
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


@pytest.mark.slow
def test_work_finishes_on_the_promoted_replica_after_the_primary_dies(
    ha: HA, tmp_path: Path
) -> None:
    witness = Witness()
    env = {**ha.env(), "IDV_WEBHOOK_URL": witness.url, "IDV_WEBHOOK_SECRET": "s"}
    worker = CeleryWorker(
        {**env, "IDV_CALLBACK_TOKENS": "t", "IDV_S3_ENDPOINT_URL": "http://127.0.0.1:9"},
        queues=[QUEUE_WEBHOOKS],
        name="sentinel",
        logfile=tmp_path / "worker.log",
    )
    worker.start()
    settings = load_settings(**{k.removeprefix("IDV_").lower(): v for k, v in env.items()})
    runtime = Cli(settings)
    producer = Producer(runtime)
    try:
        worker.wait_ready(60)
        # Before: work flows through the primary the sentinel names.
        for n in range(20):
            producer.one(n)
        wait_until(lambda: len(witness.runs) >= 20, timeout=60, interval=0.1)

        # At the kill: a burst still queued or running; its last writes just before the kill.
        for n in range(20, 40):
            producer.one(n)
        killed_at = time.monotonic()
        ha.primary.crash()

        # During and after: keep producing; the same worker must finish it on the new primary.
        n = 40
        while n < 80 and time.monotonic() - killed_at < 90:
            producer.one(n)
            n += 1
            time.sleep(0.05)
        with contextlib.suppress(TimeoutError):  # what never runs is counted below
            wait_until(lambda: set(producer.sent) <= set(witness.runs), timeout=20, interval=0.2)
    finally:
        alive = worker.alive()
        worker.stop()
        witness.close()

    promoted = ha.sentinel.primary()
    after = [witness.at[t] - killed_at for t in producer.sent if t >= "tx-ha-0040"]
    resumed_s = min(after) if after else float("inf")
    lost = sorted(set(producer.sent) - set(witness.runs))
    twice = sorted(t for t, runs in witness.runs.items() if runs > 1)
    try:
        missing_ledger = sorted(t for t in producer.ledger if runtime.ledger.get(t) is None)
        missing_records = sorted(
            t for t in producer.records if runtime.results.get_record(KIND_TX, t) is None
        )
        due = set(runtime.ledger.due("rt", time.time() + settings.ledger.reconcile_after_s, 10_000))
        # Messages the worker held when the primary died: kept in "unacked" and delivered
        # again after the visibility timeout (a second run of a task that had finished is
        # harmless: tasks are idempotent).
        unacked = _unacked(runtime)
    finally:
        runtime.close()
    delayed = sorted(set(lost) & unacked)
    print(
        f"\nfailover: the first task published after the kill ran {resumed_s:.1f}s after it; "
        f"{len(producer.sent)} tasks published, {len(lost)} not run within the test {lost} "
        f"({len(delayed)} of them unacked, delivered again after the visibility timeout; "
        f"{len(set(lost) - unacked)} messages gone), {len(twice)} ran twice {twice}; "
        f"{len(unacked) - len(delayed)} that ran left unacked (run again later); "
        f"ledger entries missing {missing_ledger}, result records missing {missing_records}; "
        f"{producer.errors} writes retried during the failover"
    )
    assert alive, "the worker exited during the failover"
    assert promoted == ("127.0.0.1", ha.replica.port)
    assert resumed_s < 60, "no task published after the kill ran"
    assert twice == []
    # Loopback replication keeps up with these writes: nothing acknowledged was lost.
    assert missing_ledger == []
    assert missing_records == []
    # A task not run is one the worker held at the kill (prefetch 1 x concurrency 2) ...
    assert len(lost) <= 2
    assert all(t < "tx-ha-0040" for t in lost)
    # ... and the ledger has its entry, due for the reconciler, which re-drives the work
    # whatever became of its message; so does the last entry written before the kill.
    assert set(lost) <= due
    assert "tx-ha-0039" in due
    assert producer.ledger <= due


def _unacked(runtime: Cli) -> set[str]:
    """Transactions whose messages wait in the broker's ``unacked`` hash."""
    settings = runtime.settings
    target = broker_target(settings.redis, settings.broker)
    shared = target == redis_target(settings.redis)
    broker = runtime.redis if shared else connect(target)
    held = set()
    try:
        for raw in broker.hvals("unacked"):
            message = json.loads(raw)[0]
            body = json.loads(base64.b64decode(message["body"]))
            held.add(body[0][0])
    finally:
        if not shared:
            broker.close()
    return held


def test_a_demoted_primary_is_a_lost_connection_not_a_readonly_error(ha: HA) -> None:
    """A managed failover that moves a DNS name: the old address now answers READONLY."""
    client = connect(f"redis://127.0.0.1:{ha.replica.port}/0", retries=0)
    try:
        assert client.connection_pool.connection_class is ReconnectingConnection
        with pytest.raises(redis.ConnectionError, match="demoted"):
            client.set("k", "v")
        assert client.get("k") is None  # reads still work: the next command reconnected
    finally:
        client.close()
