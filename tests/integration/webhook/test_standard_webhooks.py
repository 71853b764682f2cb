"""Standard Webhooks conformance: every event a real Celery worker posts is checked by the
reference library (``standardwebhooks``, PyPI) with our secret, at a real local endpoint.

One stack per module (the session's Redis, moto S3 and emulator; a worker on every queue but
the bulk one, so a batch stays ``running`` until the test pauses or cancels it). Each event
type is caused the way production causes it: a result record's webhook task, the reconciler
task (abandoned and expired transactions), a poll of a transaction the provider does not know
(the onboarding path), and the batch CLI (pause, cancel) and a bulk worker (completed).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.fixtures.e2e import E2EServers, E2EStack
from tests.fixtures.servers import wait_until
from tests.fixtures.webhooks import Delivery, WebhookReceiver, result_record
from tests.fixtures.workers import CeleryWorker
from worker.app import create_app
from worker.emulator.samples import generate_samples
from worker.events import EVENT_MODELS, event_id
from worker.jobs import EVENT_TYPES
from worker.keys import KIND_TX
from worker.ledger import State
from worker.queues import (
    QUEUE_ARCHIVAL,
    QUEUE_BULK,
    QUEUE_REALTIME,
    QUEUE_WEBHOOKS,
    TASK_DELIVER,
    TASK_RECONCILE,
)
from worker.settings import Settings, load_settings
from worker.webhook import WebhookError, WebhookSender
from worker.wiring import Cli

pytestmark = pytest.mark.slow

TOLERANCE_S = 300  # the reference library's (5 minutes)


@dataclass
class Stack(E2EStack):
    receiver: WebhookReceiver = field(default_factory=WebhookReceiver)
    hooks: CeleryWorker | None = None

    @property
    def config(self) -> Settings:
        """The settings the worker runs with (its ``IDV_*`` environment)."""
        return load_settings(**{k.removeprefix("IDV_").lower(): v for k, v in self.env.items()})

    def put_record(self, tid: str) -> None:
        """A well-formed result record of ``tid`` where the worker reads it."""
        with Cli(self.config, redis=self.redis) as cli:
            cli.results.put_record(KIND_TX, tid, result_record(tid))

    def send(self, name: str, *args: str) -> None:
        app = create_app(self.config)
        try:
            app.send_task(name, args=list(args))
        finally:
            app.close()

    def delivered(self, kind: str, subject_key: str, subject: str) -> list[Delivery]:
        """The verified deliveries of ``kind`` about ``subject``."""
        with self.receiver.lock:
            items = list(self.receiver.verified)
        return [
            d
            for d in items
            if d.event["type"] == kind and d.event["data"].get(subject_key) == subject
        ]

    def wait_for(self, kind: str, subject_key: str, subject: str) -> Delivery:
        try:
            wait_until(lambda: self.delivered(kind, subject_key, subject), timeout=60)
        except Exception:
            raise AssertionError(f"no {kind} for {subject}\n{self.logs()}") from None
        return self.delivered(kind, subject_key, subject)[0]


@pytest.fixture(scope="module")
def stack(e2e_servers: E2EServers) -> Iterator[Stack]:
    receiver = WebhookReceiver()
    url = receiver.start()
    try:
        with e2e_servers.open(
            Stack,
            "standard-webhooks",
            IDV_CALLBACK_TOKENS="tok-webhooks",
            IDV_WEBHOOK_URL=url,
            IDV_WEBHOOK_SECRET=receiver.secret,
        ) as opened:
            opened.receiver = receiver
            queues = (QUEUE_REALTIME, QUEUE_WEBHOOKS, QUEUE_ARCHIVAL)
            opened.hooks = opened.worker("hooks", queues=queues)
            try:
                opened.hooks.wait_ready()
                yield opened
            finally:
                opened.hooks.stop()
    finally:
        receiver.stop()


def _assert_conforms(delivery: Delivery) -> None:
    """The body is the envelope of its type's model, and nothing else."""
    event = delivery.event
    assert set(event) == {"type", "timestamp", "data"}
    EVENT_MODELS[event["type"]].model_validate(event)
    assert delivery.signature.startswith("v1,")
    assert abs(int(delivery.timestamp) - time.time()) < TOLERANCE_S


# ------------------------------------------------------------------ conformance


def test_a_delivered_event_verifies_and_its_retry_keeps_its_webhook_id(stack: Stack) -> None:
    tid = "tx-hook-retry"
    stack.put_record(tid)
    stack.receiver.fail_first = 1  # the first attempt gets a 503: the task retries
    stack.send(TASK_DELIVER, tid)
    delivery = stack.wait_for("onboarding.result", "transaction_id", tid)
    _assert_conforms(delivery)
    attempts = [a for a in stack.receiver.attempts if a.msg_id == delivery.msg_id]
    assert len(attempts) == 2, "one refused with 503, one verified"
    assert attempts[1] == delivery
    assert attempts[0].body == delivery.body  # the same event, byte for byte
    assert int(attempts[0].timestamp) <= int(delivery.timestamp)  # each attempt signed anew
    checked_at = str(delivery.event["data"]["checked_at"])
    assert delivery.msg_id == event_id("onboarding.result", tid, checked_at)


def test_a_timestamp_outside_the_tolerance_is_refused(stack: Stack) -> None:
    url = stack.config.webhooks.webhook_url
    assert url is not None
    refused_before = len(stack.receiver.refused)
    for skew, accepted in ((-TOLERANCE_S - 5, False), (TOLERANCE_S + 5, False),
                           (-TOLERANCE_S + 30, True), (TOLERANCE_S - 30, True)):  # fmt: skip
        sender = WebhookSender(url, stack.receiver.secret, clock=lambda s=skew: time.time() + s)
        msg_id = f"evt_skew{skew}".replace("-", "m")
        try:
            if accepted:
                assert sender.post(msg_id, b'{"type":"probe"}') == 204
            else:
                with pytest.raises(WebhookError) as info:
                    sender.post(msg_id, b'{"type":"probe"}')
                assert (info.value.status, info.value.retryable) == (400, False)
        finally:
            sender.close()
    assert stack.receiver.refused[refused_before:] == [
        "Message timestamp too old",
        "Message timestamp too new",
    ]


def test_a_tampered_body_or_another_secret_is_refused(stack: Stack) -> None:
    tid = "tx-hook-tamper"
    stack.put_record(tid)
    stack.send(TASK_DELIVER, tid)
    original = stack.wait_for("onboarding.result", "transaction_id", tid)
    headers = {
        "webhook-id": original.msg_id,
        "webhook-timestamp": original.timestamp,
        "webhook-signature": original.signature,
        "content-type": "application/json",
    }
    url = stack.config.webhooks.webhook_url
    assert url is not None
    tampered = original.body.replace(b'"passed":"Y"', b'"passed":"N"')
    assert tampered != original.body
    refused_before = len(stack.receiver.refused)
    assert httpx.post(url, content=tampered, headers=headers).status_code == 400
    other = {**headers, "webhook-id": original.msg_id + "x"}  # the id is signed too
    assert httpx.post(url, content=original.body, headers=other).status_code == 400
    # The untouched delivery, replayed within the tolerance, still verifies.
    assert httpx.post(url, content=original.body, headers=headers).status_code == 204
    assert stack.receiver.refused[refused_before:] == ["No matching signature found"] * 2
    stranger = WebhookReceiver(secret="whsec_" + "B" * 32)
    assert stranger.receive(headers, original.body) == 400
    assert stranger.refused == ["No matching signature found"]


# ------------------------------------------------------------------ every event type


def test_the_ledger_announces_abandoned_and_expired_transactions(stack: Stack) -> None:
    settings = stack.config.ledger
    with Cli(stack.config, redis=stack.redis) as cli:
        ledger = cli.ledger
        now = time.time()
        # Never completed within the flow's lifetime: the reconciler abandons it.
        ledger.record_start(
            "tx-hook-lifetime", "eKYC", "m1", created_at=now - settings.flow_lifetime_s - 60
        )
        # Completed, never archived, deleted by the provider since: the reconciler expires it.
        ledger.record_completed(
            "tx-hook-deleted", "eKYC", "m2", completed_at=now - settings.provider_retention_s - 60
        )
        # Due for a poll, unknown to the provider: the onboarding run abandons it.
        ledger.record_start(
            "tx-hook-unknown", "eKYC", "m3", created_at=now - settings.reconcile_after_s - 1
        )
        stack.send(TASK_RECONCILE)

        abandoned = stack.wait_for("onboarding.abandoned", "transaction_id", "tx-hook-lifetime")
        expired = stack.wait_for("onboarding.expired", "transaction_id", "tx-hook-deleted")
        unknown = stack.wait_for("onboarding.abandoned", "transaction_id", "tx-hook-unknown")
        for delivery in (abandoned, expired, unknown):
            _assert_conforms(delivery)
        assert abandoned.event["data"]["reason"] == "no completion within the flow's lifetime"
        assert unknown.event["data"]["reason"] == "CheckResult: TransactionIdInvalid"
        assert expired.msg_id == event_id("onboarding.expired", "tx-hook-deleted", "1")
        states = {
            tid: ledger.get(tid)
            for tid in ("tx-hook-lifetime", "tx-hook-deleted", "tx-hook-unknown")
        }
        assert {tid: e.state if e else None for tid, e in states.items()} == {
            "tx-hook-lifetime": State.ABANDONED,
            "tx-hook-deleted": State.EXPIRED,
            "tx-hook-unknown": State.ABANDONED,
        }
        # A second sweep finds them final: nothing is announced twice.
        swept = ledger.last_sweep("reconcile")
        stack.send(TASK_RECONCILE)
        wait_until(lambda: ledger.last_sweep("reconcile") != swept, timeout=30)
        assert (
            len(stack.delivered("onboarding.abandoned", "transaction_id", "tx-hook-lifetime")) == 1
        )


def _submit(stack: Stack, tmp_path: Path, name: str, rows: int) -> str:
    generate_samples(tmp_path / name, 0, bad=rows, seed=len(name))
    out = stack.cli("batch", "submit", str(tmp_path / name / "manifest.jsonl"))
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_batches_announce_paused_cancelled_and_completed(stack: Stack, tmp_path: Path) -> None:
    # No bulk worker yet: both batches stay running until the CLI changes them.
    paused = _submit(stack, tmp_path, "paused", 2)
    cancelled = _submit(stack, tmp_path, "cancelled", 2)
    assert stack.cli("batch", "pause", paused).returncode == 0
    assert stack.cli("batch", "pause", paused).returncode == 0  # already paused: no new event
    assert stack.cli("batch", "cancel", cancelled).returncode == 0
    done = _submit(stack, tmp_path, "completed", 3)
    bulk = stack.worker("bulk", queues=(QUEUE_BULK,), concurrency=1)
    try:
        bulk.wait_ready()
        completed = stack.wait_for("batch.completed", "batch_id", done)
    finally:
        bulk.stop()
    pause = stack.wait_for("batch.paused", "batch_id", paused)
    cancel = stack.wait_for("batch.cancelled", "batch_id", cancelled)
    for delivery in (pause, cancel, completed):
        _assert_conforms(delivery)
    assert pause.event["data"]["paused_by"] == "operator"
    assert pause.event["data"]["pause_reason"] == "paused by operator"
    assert cancel.event["data"]["state"] == "cancelled"
    assert completed.event["data"]["counts"]["invalid"] == 3
    assert completed.event["data"]["results_key"]
    assert len(stack.delivered("batch.paused", "batch_id", paused)) == 1


def test_every_event_type_was_posted_and_verified(stack: Stack) -> None:
    # Runs last in this module: the tests above caused one of each (and posted probes).
    assert {e["type"] for e in stack.receiver.events()} - {"probe"} == set(EVENT_TYPES)
