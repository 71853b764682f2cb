"""The webhook outbox with real Celery workers, a real Redis and a real local receiver that
verifies every POST with the Standard Webhooks library and de-duplicates on ``webhook-id``:

* the worker holding a delivery is SIGKILLed: another delivers the event within seconds (its
  claim runs out, a heartbeat hints it again), not after the broker's visibility timeout;
* the hint message is lost (the queue purged): the driver still delivers the event;
* the receiver is down for a while: the event arrives afterwards, with the same id;
* attempts run out: a dead letter holds the event.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import psutil
import pytest

from tests.fixtures.e2e import E2EServers, E2EStack
from tests.fixtures.servers import wait_until
from tests.fixtures.webhooks import WebhookReceiver, result_record
from tests.fixtures.workers import CeleryWorker
from worker.app import create_app
from worker.events import result_notice
from worker.jobs import KIND_WEBHOOK, CelerySender, Notice
from worker.keys import KIND_TX
from worker.queues import QUEUE_WEBHOOKS
from worker.settings import Settings, load_settings
from worker.wiring import Cli

pytestmark = pytest.mark.slow

HOOKS = (QUEUE_WEBHOOKS,)
CLAIM_S = 4.0
MAX_ATTEMPTS = 4


@dataclass
class Stack(E2EStack):
    receiver: WebhookReceiver = field(default_factory=WebhookReceiver)

    @property
    def config(self) -> Settings:
        return load_settings(**{k.removeprefix("IDV_").lower(): v for k, v in self.env.items()})

    def announce(self, tid: str) -> str:
        """Write ``tid``'s result record and announce its event as a worker does; its id."""
        with Cli(self.config, redis=self.redis) as cli:
            record = result_record(tid)
            cli.results.put_record(KIND_TX, tid, record)
            sender = cli.sender
            assert isinstance(sender, CelerySender)
            assert sender.outbox is not None
            sender.notify(result_notice(record))
            evt, fresh = sender.outbox.add(result_notice(record))
            assert not fresh
            return evt

    def state(self, evt: str) -> str:
        raw = self.redis.hget(f"idv:{{outbox}}:evt:{evt}", "state")
        return "" if raw is None else raw.decode()

    def purge(self) -> int:
        app = create_app(self.config)
        try:
            with app.connection_for_write() as conn:
                return int(conn.default_channel.queue_purge(QUEUE_WEBHOOKS) or 0)
        finally:
            app.close()


@pytest.fixture(scope="module")
def stack(e2e_servers: E2EServers) -> Iterator[Stack]:
    receiver = WebhookReceiver()
    url = receiver.start()
    try:
        with e2e_servers.open(
            Stack,
            "outbox",
            IDV_WEBHOOK_URL=url,
            IDV_WEBHOOK_SECRET=receiver.secret,
            IDV_WEBHOOK_TIMEOUT_S="2",
            IDV_WEBHOOK_CLAIM_S=str(CLAIM_S),
            IDV_WEBHOOK_MAX_ATTEMPTS=str(MAX_ATTEMPTS),
            IDV_HEARTBEAT_EVERY_S="1",
        ) as opened:
            opened.receiver = receiver
            yield opened
    finally:
        receiver.stop()


def _worker(stack: Stack, name: str) -> CeleryWorker:
    worker = stack.worker(name, queues=HOOKS, concurrency=1)
    worker.wait_ready()
    return worker


def _holding(workers: list[CeleryWorker], port: int) -> CeleryWorker:
    """The worker whose pool process has the connection from ``port`` open."""
    for worker in workers:
        for pid in worker.children():
            for conn in psutil.Process(pid).net_connections(kind="tcp"):
                if conn.laddr and conn.laddr.port == port:
                    return worker
    raise AssertionError(f"no worker holds the connection from port {port}")


def test_a_killed_workers_delivery_is_made_by_another_within_seconds(stack: Stack) -> None:
    rx = stack.receiver
    rx.release.clear()
    rx.hold_first = 1  # the first attempt hangs at the receiver: a delivery in flight
    workers = [_worker(stack, "first"), _worker(stack, "second")]
    try:
        evt = stack.announce("tx-kill-1")
        wait_until(lambda: rx.held == 1, timeout=30, interval=0.05)
        holder = _holding(workers, rx.held_from[0])
        holder.kill()  # SIGKILL mid-post; its message stays unacknowledged
        killed = time.monotonic()
        wait_until(lambda: evt in rx.verified_ids(), timeout=30, interval=0.1)
        took_s = time.monotonic() - killed
    finally:
        rx.release.set()
        for worker in workers:
            worker.stop()
    print(f"outbox takeover after SIGKILL: {took_s:.1f}s")
    assert took_s <= CLAIM_S + 4, f"took {took_s:.1f}s\n{stack.logs()}"
    # Exactly once at a de-duplicating receiver: every attempt carried the same id.
    assert [a.msg_id for a in rx.attempts if a.msg_id == evt] == [evt, evt]
    assert rx.verified_ids().count(evt) == 1
    assert stack.state(evt) == "delivered"


def test_a_lost_hint_is_delivered_by_the_driver(stack: Stack) -> None:
    evt = stack.announce("tx-lost-1")  # no worker runs: its hint waits in the queue
    assert stack.purge() >= 1  # ...and is lost
    worker = _worker(stack, "driver")
    try:
        wait_until(lambda: evt in stack.receiver.verified_ids(), timeout=CLAIM_S + 15)
    finally:
        worker.stop()
    assert stack.receiver.verified_ids().count(evt) == 1
    assert stack.state(evt) == "delivered"


def test_an_event_waits_out_a_receiver_that_is_down(stack: Stack) -> None:
    rx = stack.receiver
    port = rx.port
    worker = _worker(stack, "patient")
    try:
        rx.stop()  # down: connections refused
        rx.release.clear()
        evt = stack.announce("tx-down-1")
        wait_until(
            lambda: int(stack.redis.hget(f"idv:{{outbox}}:evt:{evt}", "attempts") or 0) >= 2,
            timeout=30,
        )
        assert stack.state(evt) == "pending"
        rx.start(port)  # up again
        wait_until(lambda: evt in rx.verified_ids(), timeout=30)
    finally:
        worker.stop()
    assert rx.verified_ids().count(evt) == 1
    assert stack.state(evt) == "delivered"


def test_attempts_run_out_into_a_dead_letter(stack: Stack) -> None:
    rx = stack.receiver
    rx.fail_first = 1000  # 503 to everything
    worker = _worker(stack, "dead")
    tid = "tx-dead-1"
    try:
        evt = stack.announce(tid)
        wait_until(lambda: stack.state(evt) == "dead", timeout=60)
    finally:
        worker.stop()
        rx.fail_first = 0
    failed = [a for a in rx.attempts if a.msg_id == evt]
    assert len(failed) == MAX_ATTEMPTS
    assert len({a.body for a in failed}) == 1
    with Cli(stack.config, redis=stack.redis) as cli:
        letter = cli.deadletters.get(KIND_WEBHOOK, f"tx:{tid}:{evt}")
        assert letter is not None
        assert letter.code == "HTTP 503"
        assert Notice.from_message(letter.payload["notice"]).subject == tid
        report = cli.eraser().erase_transaction(tid, by="test")
    assert report.dead_letters == 1
    assert report.outbox_events == 1
    assert stack.redis.exists(f"idv:{{outbox}}:evt:{evt}") == 0
