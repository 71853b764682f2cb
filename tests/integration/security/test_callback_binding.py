"""Callbacks bound to their flow by the ledger (issue 18): a leaked per-flow token drives no
other flow, what is not authenticated writes nothing, unknown transactions cannot grow Redis,
and ``completed_at`` is never a callback's arrival. Real redis-server, real broker (Redis)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from worker.app import create_app
from worker.ledger import State
from worker.onboarding import CallbackIntake, CallbackRejected, derive_callback_token
from worker.queues import QUEUE_REALTIME
from worker.settings import Settings, load_settings
from worker.wiring import Cli

SECRET = "per-flow-secret-leak"
STATIC = "static-token-0001"
TID_A = "hkaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
TID_B = "hkbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
TID_X = "hkxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"  # never started through us
BIZ_A, BIZ_B = "bizflowA", "bizflowB"
TOKEN_A = derive_callback_token(SECRET, BIZ_A)


def _settings(redis_url: str, **over: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "callback_token_secret": SecretStr(SECRET),
    }
    values.update(over)
    return load_settings(**values)


class Stack:
    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self.client = client
        self.cli = Cli(settings, app=create_app(settings), redis=client)
        self.ledger = self.cli.ledger
        self.intake: CallbackIntake = self.cli.intake()

    def start(self, tid: str, biz: str) -> None:
        assert self.ledger.record_start(tid, "ID_OCR_MIN", biz)

    def snapshot(self) -> dict[str, Any]:
        """Every key but the metrics counters (fixed labels: bounded), with its value."""
        out: dict[str, Any] = {}
        for raw in self.client.scan_iter(count=1000):
            key = raw.decode()
            if "metric" in key:
                continue
            kind = self.client.type(key).decode()
            if kind == "hash":
                out[key] = self.client.hgetall(key)
            elif kind == "zset":
                out[key] = self.client.zrange(key, 0, -1, withscores=True)
            elif kind == "list":
                out[key] = self.client.lrange(key, 0, -1)
            else:
                out[key] = kind
        return out

    def refused(self, params: dict[str, str]) -> CallbackRejected:
        before = self.snapshot()
        with pytest.raises(CallbackRejected) as caught:
            self.intake.submit(params)
        assert self.snapshot() == before, "a refused callback changed Redis"
        return caught.value


def _cb(tid: str, token: str, biz: str | None = None, **extra: str) -> dict[str, str]:
    out = {"transactionId": tid, "passed": "Y", "subCode": "200", "callbackToken": token}
    if biz is not None:
        out["merchantBizId"] = biz
    out.update(extra)
    return out


@pytest.fixture
def stack(redis_url: str, redis_client: redis.Redis) -> Iterator[Stack]:
    s = Stack(_settings(redis_url, callback_require_known=True), redis_client)
    s.start(TID_A, BIZ_A)
    s.start(TID_B, BIZ_B)
    yield s
    s.cli.close()


def test_a_leaked_token_of_flow_a_cannot_complete_flow_b(stack: Stack) -> None:
    # The attack of issue 18: A's token and A's merchantBizId, B's transaction id.
    refusal = stack.refused(_cb(TID_B, TOKEN_A, BIZ_A))
    assert refusal.status == 403
    entry = stack.ledger.get(TID_B)
    assert entry is not None
    assert entry.state is State.INITIALIZED
    assert entry.completed_at is None
    assert stack.client.llen(QUEUE_REALTIME) == 0


def test_a_token_of_flow_a_with_flow_bs_merchant_biz_id_is_refused(stack: Stack) -> None:
    assert stack.refused(_cb(TID_B, TOKEN_A, BIZ_B)).status == 403
    assert stack.refused(_cb(TID_B, TOKEN_A)).status == 403  # no merchantBizId at all
    # B's own token naming A's merchantBizId: the callback's id must be the stored one.
    assert stack.refused(_cb(TID_B, derive_callback_token(SECRET, BIZ_B), BIZ_A)).status == 403
    assert stack.ledger.get(TID_B).state is State.INITIALIZED  # type: ignore[union-attr]


def test_flow_as_token_completes_flow_a_without_taking_the_callbacks_time(stack: Stack) -> None:
    first = stack.intake.submit(_cb(TID_A, TOKEN_A, BIZ_A), received_at=time.time() - 5)
    assert first.status == "accepted"
    assert stack.intake.submit(_cb(TID_A, TOKEN_A)).status == "duplicate"
    entry = stack.ledger.get(TID_A)
    assert entry is not None
    assert entry.state is State.COMPLETED
    # The callback's arrival is not a completion time: the worker's first sight of the result is.
    assert entry.completed_at is None
    assert stack.ledger.saw_completed(TID_A, 1_800_000_000.0) == 1_800_000_000.0
    assert stack.ledger.saw_completed(TID_A, 1_800_000_500.0) == 1_800_000_000.0
    assert stack.ledger.get(TID_A).completed_at == 1_800_000_000.0  # type: ignore[union-attr]
    assert stack.ledger.saw_completed(TID_X, 1.0) is None
    assert stack.ledger.get(TID_X) is None
    assert stack.client.llen(QUEUE_REALTIME) == 1


@pytest.mark.parametrize("require_known", [False, True])
def test_an_unknown_transaction_with_a_valid_looking_token_writes_nothing(
    redis_url: str, redis_client: redis.Redis, require_known: bool
) -> None:
    stack = Stack(_settings(redis_url, callback_require_known=require_known), redis_client)
    try:
        for params in (
            _cb(TID_X, TOKEN_A, BIZ_A),  # a real flow's token, an id it never started
            _cb(TID_X, derive_callback_token(SECRET, "bizguess"), "bizguess"),
            _cb(TID_X, "0" * 64),
            _cb("not an id", TOKEN_A, BIZ_A),
        ):
            assert stack.refused(params).status == 403
        assert redis_client.dbsize() == 0 or all(
            "metric" in k.decode() for k in redis_client.scan_iter()
        )
    finally:
        stack.cli.close()


def test_a_flood_of_unknown_ids_with_a_derived_token_does_not_grow_redis(
    redis_url: str, redis_client: redis.Redis
) -> None:
    stack = Stack(_settings(redis_url), redis_client)  # require_known off: the default
    try:
        before = redis_client.info("memory")["used_memory"]
        for n in range(300):
            tid = f"hkflood{n:025d}"
            with pytest.raises(CallbackRejected):
                stack.intake.submit(_cb(tid, derive_callback_token(SECRET, f"b{n}"), f"b{n}"))
        assert stack.snapshot() == {}
        assert redis_client.info("memory")["used_memory"] - before < 64 * 1024
    finally:
        stack.cli.close()


def test_a_static_token_opens_unknown_transactions_only_up_to_the_bound(
    redis_url: str, redis_client: redis.Redis
) -> None:
    settings = _settings(redis_url, callback_tokens=[SecretStr(STATIC)], callback_max_unknown=2)
    stack = Stack(settings, redis_client)
    try:
        stack.start(TID_B, BIZ_B)
        # The documented static behaviour: any known flow, and unknown ones (an entry each).
        assert stack.intake.submit(_cb(TID_B, STATIC)).status == "accepted"
        assert stack.intake.submit(_cb("hkunknown1" + "0" * 22, STATIC)).status == "accepted"
        assert stack.intake.submit(_cb("hkunknown2" + "0" * 22, STATIC)).status == "accepted"
        full = stack.refused(_cb("hkunknown3" + "0" * 22, STATIC))
        assert (full.status, full.retryable) == (503, True)
        assert stack.ledger.get("hkunknown3" + "0" * 22) is None
        # A flow started later is a real entry again: it leaves the bounded set.
        assert not stack.ledger.record_start("hkunknown1" + "0" * 22, "ID_OCR_MIN", "bizlate")
        assert stack.intake.submit(_cb("hkunknown4" + "0" * 22, STATIC)).status == "accepted"
        # A wrong static token is refused without a write, as before.
        assert stack.refused(_cb("hkunknown5" + "0" * 22, STATIC + "x")).status == 403
    finally:
        stack.cli.close()


def test_a_static_token_with_require_known_writes_nothing_for_unknown_ids(
    redis_url: str, redis_client: redis.Redis
) -> None:
    settings = _settings(
        redis_url, callback_tokens=[SecretStr(STATIC)], callback_require_known=True
    )
    stack = Stack(settings, redis_client)
    try:
        assert stack.refused(_cb(TID_X, STATIC)).status == 403
        assert stack.snapshot() == {}
    finally:
        stack.cli.close()
