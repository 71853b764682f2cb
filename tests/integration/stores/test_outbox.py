"""The webhook outbox against a real Redis, posting to a real local receiver that verifies
each event with the Standard Webhooks library: one entry per event, one attempt at a time,
retries as due times, the same ``webhook-id`` on every attempt, a dead letter when attempts run
out, and erasure that reaches both."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.fixtures.webhooks import WebhookReceiver, result_record
from worker.events import event_id, result_notice
from worker.events.delivery import EventDelivery, OutboxDriver
from worker.jobs import KIND_WEBHOOK, Notice, transaction_ended
from worker.jobs.outbox import Claimed, Outbox
from worker.keys import RedisKeys
from worker.observability import RedisMetrics
from worker.settings import load_settings
from worker.stores import DeadLetterStore
from worker.webhook import WebhookSender

KEYS = RedisKeys("idv:")
LEASE_S = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    rx = WebhookReceiver()
    rx.start()
    try:
        yield rx
    finally:
        rx.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def outbox(redis_client: redis.Redis, clock: Clock) -> Outbox:
    return Outbox(redis_client, KEYS, lease_s=LEASE_S, keep_s=3600, clock=clock)


def _delivery(
    outbox: Outbox,
    redis_client: redis.Redis,
    receiver: WebhookReceiver,
    clock: Clock,
    attempts: int = 3,
) -> EventDelivery:
    url = f"http://127.0.0.1:{receiver.port}/hooks"
    settings = load_settings(
        webhook_url=url, webhook_secret=receiver.secret, webhook_max_attempts=attempts
    ).webhooks
    sender = WebhookSender(url, receiver.secret, timeout_s=5)
    return EventDelivery(
        outbox, sender, DeadLetterStore(redis_client, KEYS), settings,
        RedisMetrics(redis_client, namespace="idv:"), clock=clock,
    )  # fmt: skip


def _notice(tid: str = "tx-out-1") -> Notice:
    return result_notice(result_record(tid))


def test_an_event_is_written_once_and_never_sent_again_once_delivered(
    outbox: Outbox, redis_client: redis.Redis, receiver: WebhookReceiver, clock: Clock
) -> None:
    notice = _notice()
    evt, fresh = outbox.add(notice)
    assert fresh
    assert evt == event_id(notice.type, notice.subject, notice.version)
    assert outbox.add(notice) == (evt, False)  # announced again: the same entry, no new send
    assert outbox.take_due(10, hint_s=30) == []  # its own hint is expected to claim it
    clock.now += LEASE_S
    assert outbox.take_due(10, hint_s=30) == [evt]  # that hint was lost: due now
    assert outbox.take_due(10, hint_s=30) == []  # hinted: not due again for hint_s
    delivery = _delivery(outbox, redis_client, receiver, clock)
    assert delivery.send(evt) == "delivered"
    assert receiver.verified_ids() == [evt]
    assert outbox.get(evt)["state"] == "delivered"
    assert 0 < redis_client.ttl(outbox.event_key(evt)) <= 3600
    # Neither a repeated announcement nor a stray hint sends it again.
    assert outbox.add(notice) == (evt, False)
    assert delivery.send(evt) == "delivered"
    clock.now += 1000
    assert outbox.take_due(10, hint_s=30) == []
    assert receiver.verified_ids() == [evt]
    assert outbox.backlog().pending == 0


def test_one_attempt_at_a_time_and_a_dead_attempts_claim_runs_out(
    outbox: Outbox, clock: Clock
) -> None:
    evt, _ = outbox.add(_notice())
    first = outbox.claim(evt)
    assert isinstance(first, Claimed)
    assert first.attempt == 1
    assert outbox.claim(evt) == "held"
    clock.now += LEASE_S - 0.5
    assert outbox.claim(evt) == "held"  # just before its end
    assert outbox.take_due(10, hint_s=30) == []  # due at the claim's end, not before
    clock.now += 1.0
    assert outbox.take_due(10, hint_s=30) == [evt]  # the holder died: due for another
    second = outbox.claim(evt)
    assert isinstance(second, Claimed)
    assert second.attempt == 2
    # The first attempt's late answer cannot move a claim it lost...
    assert not outbox.finish(first, "retry", next_at=clock.now + 100)
    assert not outbox.finish(first, "dead", error="late")
    assert outbox.get(evt)["claim"] == second.token
    # ...but a delivery is a delivery, whoever made it.
    assert outbox.finish(first, "delivered")
    assert outbox.claim(evt) == "delivered"
    assert not outbox.finish(second, "retry", next_at=clock.now)


def test_a_refused_attempt_is_a_due_time_with_the_same_webhook_id(
    outbox: Outbox, redis_client: redis.Redis, receiver: WebhookReceiver, clock: Clock
) -> None:
    evt, _ = outbox.add(_notice("tx-out-2"))
    receiver.fail_first = 1
    delivery = _delivery(outbox, redis_client, receiver, clock)
    assert delivery.send(evt) == "retry"
    next_at = float(outbox.get(evt)["next_at"])
    assert clock.now + 2.5 <= next_at <= clock.now + 5.0  # jittered, WEBHOOK_TASK's base
    assert delivery.send(evt) == "later"  # an early hint sends nothing
    assert outbox.take_due(10, hint_s=30) == []
    clock.now = next_at
    assert outbox.take_due(10, hint_s=30) == [evt]
    assert delivery.send(evt) == "delivered"
    assert [a.msg_id for a in receiver.attempts] == [evt, evt]
    assert receiver.attempts[0].body == receiver.attempts[1].body
    assert receiver.verified_ids() == [evt]


def test_attempts_run_out_into_a_dead_letter_erasure_finds(
    outbox: Outbox, redis_client: redis.Redis, receiver: WebhookReceiver, clock: Clock
) -> None:
    tid = "tx-out-3"
    notice = _notice(tid)
    evt, _ = outbox.add(notice)
    other, _ = outbox.add(transaction_ended("tx-out-4", "abandoned", at=clock.now, reason="x"))
    receiver.fail_first = 100
    delivery = _delivery(outbox, redis_client, receiver, clock, attempts=2)
    assert delivery.send(evt) == "retry"
    clock.now += 10
    assert delivery.send(evt) == "dead"
    assert outbox.get(evt)["state"] == "dead"
    assert outbox.claim(evt) == "dead"
    letters = DeadLetterStore(redis_client, KEYS)
    letter = letters.get(KIND_WEBHOOK, f"tx:{tid}:{evt}")
    assert letter is not None
    assert letter.code == "HTTP 503"
    assert letter.payload["event_id"] == evt
    assert Notice.from_message(letter.payload["notice"]) == notice
    assert receiver.verified_ids() == []
    # Announced again (``dlq retry``): pending with fresh attempts, the same id.
    assert outbox.add(notice) == (evt, True)
    claimed = outbox.claim(evt)
    assert isinstance(claimed, Claimed)
    assert claimed.attempt == 1
    # Erasure of the transaction reaches its outbox entries; another's stay.
    assert outbox.of_subject("tx", tid) == [evt]
    assert outbox.erase("tx", tid) == 1
    assert outbox.get(evt) == {}
    assert outbox.of_subject("tx", tid) == []
    assert outbox.get(other)["state"] == "pending"
    assert outbox.backlog().pending == 1


def test_the_driver_hints_due_events_and_publishes_the_backlog(
    outbox: Outbox, redis_client: redis.Redis, clock: Clock
) -> None:
    hinted: list[str] = []
    metrics = RedisMetrics(redis_client, namespace="idv:")
    driver = OutboxDriver(outbox, hinted.append, metrics, hint_s=30)
    first, _ = outbox.add(_notice("tx-out-5"))
    clock.now += 30
    second, _ = outbox.add(_notice("tx-out-6"))
    assert driver.tick() == 1  # the first one's hint was lost; the second's is on its way
    assert hinted == [first]
    clock.now += LEASE_S
    assert driver.tick() == 1  # the second one's too
    assert hinted == [first, second]
    assert driver.tick() == 0  # a hint is not repeated before hint_s
    clock.now += 30
    assert driver.tick() == 2  # lost again: hinted again
    _, gauges = metrics.read()
    assert gauges["idv_webhook_outbox_pending"] == 2
    assert gauges["idv_webhook_outbox_oldest_seconds"] == 60 + LEASE_S
