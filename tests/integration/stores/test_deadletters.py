"""DeadLetterStore and the ``dlq`` command against a real Redis server."""

from __future__ import annotations

import argparse
import json

import pytest
import redis

from tests.fixtures.servers import free_port
from worker.commands import dlq as dlq_command
from worker.jobs import (
    KIND_ARCHIVAL,
    KIND_CHUNK,
    KIND_EVIDENCE,
    KIND_FINALIZE,
    KIND_ONBOARDING,
    KIND_WATCHDOG,
    KIND_WEBHOOK,
    OnboardingJob,
    register_retries,
)
from worker.keys import InvalidKeyError, RedisKeys, item_ref
from worker.settings import Settings, load_settings
from worker.stores import (
    MAX_REASON_LENGTH,
    DeadLetter,
    DeadLetterStore,
    NoRetryHandler,
)

RETRIED_KINDS = (
    KIND_ONBOARDING,
    KIND_EVIDENCE,
    KIND_ARCHIVAL,
    KIND_WEBHOOK,
    KIND_CHUNK,
    KIND_WATCHDOG,
    KIND_FINALIZE,
)


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def settings() -> Settings:
    return load_settings(namespace="idv:")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(redis_client: redis.Redis, settings: Settings, clock: Clock) -> DeadLetterStore:
    return DeadLetterStore(redis_client, RedisKeys(settings.redis.namespace), clock=clock)


class RecordingSender:
    """A ``WorkSender`` that records what it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, object]] = []

    def onboard(
        self,
        job: OnboardingJob,
        *,
        late: bool = False,
        task_id: str | None = None,
        urgent: bool = False,
    ) -> None:
        self.sent.append(("onboard", job.transaction_id))

    def archive(self, job: OnboardingJob) -> None:
        self.sent.append(("archive", job.transaction_id))

    def deliver(self, transaction_id: str) -> None:
        self.sent.append(("deliver", transaction_id))

    def chunks(self, batch_id: str, chunk_nos: object, *, countdown: float = 0.0) -> int:
        numbers = list(chunk_nos)  # type: ignore[call-overload]
        self.sent.append(("chunks", (batch_id, numbers)))
        return len(numbers)

    def watchdog(self, batch_id: str, countdown: float) -> None:
        self.sent.append(("watchdog", batch_id))

    def finalize(self, batch_id: str) -> None:
        self.sent.append(("finalize", batch_id))

    def archival_backlog(self) -> int:
        return 0


def test_add_is_idempotent_and_counts(store: DeadLetterStore, clock: Clock) -> None:
    first = store.add(
        "tx", "t1", "CheckResult failed", code="Forbidden.Account", payload={"tid": "t1"}
    )
    assert (first.count, first.reason, first.code) == (1, "CheckResult failed", "Forbidden.Account")
    assert first.first_at == first.last_at == clock.now
    assert first.payload == {"tid": "t1"}

    clock.now += 60
    again = store.add("tx", "t1", "evidence lost", detail="link expired")
    assert again.count == 2
    assert again.reason == "evidence lost"
    assert again.code is None  # the latest failure's code replaces the old one
    assert again.detail == "link expired"
    assert again.payload == {"tid": "t1"}  # kept when not given again
    assert (again.first_at, again.last_at) == (first.first_at, clock.now)
    assert store.get("tx", "t1") == again
    assert store.count() == 1

    third = store.add("tx", "t1", "again", payload={"tid": "t1", "attempt": 3})
    assert third.payload == {"tid": "t1", "attempt": 3}


def test_dead_letters_have_no_ttl(store: DeadLetterStore, redis_client: redis.Redis) -> None:
    store.add("item", item_ref("b1", "i1"), "DocOcrV2 permanent error")
    assert redis_client.ttl("idv:dlq:entry:item:b1:i1") == -1
    assert redis_client.ttl("idv:dlq:index") == -1
    assert redis_client.ttl("idv:dlq:kind:item") == -1


def test_list_newest_first_with_kind_filter_and_paging(
    store: DeadLetterStore, clock: Clock
) -> None:
    for n in range(5):
        clock.now += 1
        store.add("tx", f"t{n}", "failed")
        clock.now += 1
        store.add("item", item_ref("b1", f"i{n}"), "failed")
    assert [e.id for e in store.list("tx")] == ["t4", "t3", "t2", "t1", "t0"]
    assert [e.id for e in store.list("tx", limit=2, offset=1)] == ["t3", "t2"]
    everything = store.list(limit=3)
    assert [(e.kind, e.id) for e in everything] == [
        ("item", "b1:i4"),
        ("tx", "t4"),
        ("item", "b1:i3"),
    ]
    assert (store.count(), store.count("tx"), store.count("item"), store.count("ocr")) == (
        10,
        5,
        5,
        0,
    )
    # Re-adding moves an entry to the front.
    clock.now += 10
    store.add("tx", "t0", "failed again")
    assert store.list(limit=1)[0].id == "t0"
    assert store.list(limit=0) == []


def test_remove_cleans_every_index(store: DeadLetterStore, redis_client: redis.Redis) -> None:
    store.add("tx", "t1", "failed")
    assert store.remove("tx", "t1") is True
    assert store.remove("tx", "t1") is False
    assert store.get("tx", "t1") is None
    assert (store.count(), store.count("tx")) == (0, 0)
    assert redis_client.dbsize() == 0


def test_inputs_are_bounded(store: DeadLetterStore, redis_client: redis.Redis) -> None:
    entry = store.add("tx", "t1", "x" * 5000)
    assert len(entry.reason) == MAX_REASON_LENGTH
    with pytest.raises(ValueError, match="payload"):
        store.add("tx", "t2", "failed", payload={"image": "A" * 20_000})
    with pytest.raises(InvalidKeyError):
        store.add("tx", "../t3", "failed")
    with pytest.raises(InvalidKeyError):
        store.add("Bad Kind", "t3", "failed")
    assert store.count() == 1


def test_retry_through_the_registered_handler(store: DeadLetterStore) -> None:
    store.add("ocr", item_ref("b1", "i1"), "quota", payload={"batch": "b1", "item": "i1"})
    with pytest.raises(NoRetryHandler, match="no retry handler is registered for kind 'ocr'"):
        store.retry("ocr", item_ref("b1", "i1"))
    assert store.get("ocr", item_ref("b1", "i1")) is not None

    retried: list[DeadLetter] = []
    store.register_retry("ocr", retried.append)
    assert store.has_retry("ocr")
    assert store.retry("ocr", item_ref("b1", "i1")) is True
    assert [e.payload for e in retried] == [{"batch": "b1", "item": "i1"}]
    assert store.get("ocr", item_ref("b1", "i1")) is None
    assert store.retry("ocr", item_ref("b1", "i1")) is False


def test_failed_retry_keeps_the_entry(store: DeadLetterStore) -> None:
    store.add("tx", "t1", "failed")

    def broken(entry: DeadLetter) -> None:
        raise ConnectionError("broker down")

    store.register_retry("tx", broken)
    with pytest.raises(ConnectionError):
        store.retry("tx", "t1")
    assert store.get("tx", "t1") is not None


def test_entry_that_fails_again_during_retry_is_kept(store: DeadLetterStore) -> None:
    store.add("tx", "t1", "failed")

    def requeue_that_fails_at_once(entry: DeadLetter) -> None:
        # The re-enqueued work fails again before retry() gets to remove the old entry.
        store.add("tx", "t1", "failed again")

    store.register_retry("tx", requeue_that_fails_at_once)
    assert store.retry("tx", "t1") is True
    entry = store.get("tx", "t1")
    assert entry is not None
    assert (entry.count, entry.reason) == (2, "failed again")


def test_register_retries_through_the_sender(store: DeadLetterStore) -> None:
    assert not any(store.has_retry(kind) for kind in RETRIED_KINDS)
    sender = RecordingSender()
    register_retries(store, sender)
    assert all(store.has_retry(kind) for kind in RETRIED_KINDS)
    store.add(KIND_CHUNK, item_ref("b1", "c3"), "failed", payload={"batch": "b1", "chunk": 3})
    assert store.retry(KIND_CHUNK, item_ref("b1", "c3")) is True
    assert sender.sent == [("chunks", ("b1", [3]))]


def run_dlq(redis_url: str, *argv: str) -> int:
    """``idv-worker dlq ...`` with ``IDV_REDIS_URL=redis_url`` (connections come from the env)."""
    parser = argparse.ArgumentParser(prog="idv-worker")
    dlq_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["dlq", *argv])
    with pytest.MonkeyPatch.context() as env:
        env.setenv("IDV_REDIS_URL", redis_url)
        return int(args.handler(args))


def test_cli_list_show_retry_purge(
    store: DeadLetterStore, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_dlq(redis_url, "list") == 0
    assert "no dead letters" in capsys.readouterr().out

    store.add("tx", "t1", "CheckResult failed", code="InternalError", payload={"tid": "t1"})
    store.add("item", item_ref("b1", "i1"), "photo unreadable")
    assert run_dlq(redis_url, "list") == 0
    out = capsys.readouterr().out
    assert "t1" in out
    assert "InternalError" in out
    assert "b1:i1" in out
    assert "(2 shown, 2 in all)" in out

    assert run_dlq(redis_url, "list", "--kind", "tx", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["total"] == 1
    assert [(d["kind"], d["id"], d["payload"]) for d in doc["dead_letters"]] == [
        ("tx", "t1", {"tid": "t1"})
    ]

    assert run_dlq(redis_url, "show", "tx", "t1", "--json") == 0
    assert json.loads(capsys.readouterr().out)["reason"] == "CheckResult failed"
    assert run_dlq(redis_url, "show", "tx", "t1") == 0
    text = capsys.readouterr().out
    assert text.startswith("tx:t1  1 failure(s)")
    assert "reason: CheckResult failed" in text
    assert run_dlq(redis_url, "show", "tx", "nope") == 1
    assert "idv-worker dlq show: no dead letter tx:nope" in capsys.readouterr().err

    assert run_dlq(redis_url, "retry", "tx", "t1") == 1
    assert "no retry handler is registered for kind 'tx'" in capsys.readouterr().err
    assert store.get("tx", "t1") is not None

    assert run_dlq(redis_url, "purge", "tx", "t1") == 0
    assert store.get("tx", "t1") is None
    assert run_dlq(redis_url, "purge", "tx", "t1") == 1
    assert run_dlq(redis_url, "show", "tx", "../etc") == 2
    assert "invalid id" in capsys.readouterr().err


def test_cli_reports_unreachable_redis(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_dlq(f"redis://127.0.0.1:{free_port()}/0", "list") == 1
    assert "cannot use Redis: ConnectionError" in capsys.readouterr().err
