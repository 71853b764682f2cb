"""How provider answers map to item outcomes, with the network scripted by httpx.MockTransport.

The claiming transport, the client, the limiter, Redis and S3 are the real ones; only the
bytes coming back from "the provider" are written by the test.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.fixtures.batch import Rig, build_rig, write_manifest
from tests.fixtures.emulator import EmulatorHandle
from worker.batch import BatchState, ChunkOutcome, ItemStatus, RetryChunk
from worker.emulator.samples import generate_samples
from worker.observability import RedisMetrics
from worker.ratelimit import CallContext, Lane

Handler = Callable[[httpx.Request], httpx.Response]


class Script:
    """Answers requests with the next handler (the last one repeats); counts DocOcrV2 calls."""

    def __init__(self) -> None:
        self.handlers: list[Handler] = []
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        index = min(self.calls, len(self.handlers)) - 1
        return self.handlers[index](request)


def ok(sub_code: str = "200") -> Handler:
    def answer(request: httpx.Request) -> httpx.Response:
        ext = {"ocrIdInfo": {"name": "Test"}, "spoofInfo": {"spoofResult": "N", "spoofType": []}}
        result = {
            "TransactionId": f"tx{request.headers['x-acs-signature-nonce'][:8]}",
            "Passed": "Y" if sub_code == "200" else "N",
            "SubCode": sub_code,
            "ExtIdInfo": json.dumps(ext),
        }
        body = {"RequestId": "REQ-OK", "Code": "Success", "Message": "success", "Result": result}
        return httpx.Response(200, json=body)

    return answer


def error(status: int, code: str) -> Handler:
    def answer(request: httpx.Request) -> httpx.Response:
        body = {"RequestId": "REQ-ERR", "Code": code, "Message": f"{code} from the test"}
        return httpx.Response(status, json=body)

    return answer


def timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("read timed out", request=request)


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def scripted(
    redis_url: str, s3_endpoint: str, emulator: EmulatorHandle, script: Script
) -> Iterator[Rig]:
    metrics = RedisMetrics(redis.Redis.from_url(redis_url))
    yield from build_rig(
        redis_url, s3_endpoint, emulator, transport=httpx.MockTransport(script), metrics=metrics
    )


def _submit(rig: Rig, tmp_path: Path, count: int) -> str:
    rows = generate_samples(tmp_path / "img", count, seed=3)
    manifest = [{"image": r.image, "doc_type": r.doc_type, "card_side": r.card_side} for r in rows]
    manifest = [{k: v for k, v in row.items() if v} for row in manifest]
    return rig.api.submit(write_manifest(tmp_path / "m.jsonl", manifest)).batch_id


def _detail(rig: Rig, batch: str, status: ItemStatus) -> list[dict[str, Any]]:
    return list(rig.api.results(batch, only=[status]))


def test_sub_codes_211_to_213_are_results(scripted: Rig, script: Script, tmp_path: Path) -> None:
    script.handlers = [ok("211"), ok("212"), ok("213"), ok()]
    batch = _submit(scripted, tmp_path, 4)
    assert scripted.run_queue() == [ChunkOutcome.COMPLETED]
    progress = scripted.api.status(batch)
    assert progress.counts[ItemStatus.DONE] == 4
    assert progress.sub_codes == {"200": 1, "211": 1, "212": 1, "213": 1}
    assert [r["passed"] for r in scripted.api.results(batch)] == ["N", "N", "N", "Y"]
    counters = RedisMetrics(scripted.redis).snapshot()
    assert counters['idv_batch_items_total{outcome="done"}'] == 4


def test_400_and_401_codes_fail_the_item_with_the_reason(
    scripted: Rig, script: Script, tmp_path: Path
) -> None:
    script.handlers = [error(400, "InvalidParameter"), error(401, "UnqualifiedPhoto"), ok()]
    batch = _submit(scripted, tmp_path, 3)
    assert scripted.run_queue() == [ChunkOutcome.COMPLETED]
    assert script.calls == 3  # a refused item is not retried
    failed = _detail(scripted, batch, ItemStatus.FAILED)
    assert [(f["row"], f["code"]) for f in failed] == [
        (1, "InvalidParameter"),
        (2, "UnqualifiedPhoto"),
    ]
    assert all("from the test" in f["reason"] for f in failed)
    assert failed[0]["request_id"] == "REQ-ERR"
    assert not scripted.store.claims(batch)
    # retry-failed sends exactly the failed rows again.
    script.handlers = [ok()]
    script.calls = 0
    assert scripted.api.retry_failed(batch).reset_rows == 2
    scripted.run_queue()
    assert script.calls == 2
    assert scripted.api.status(batch).counts[ItemStatus.DONE] == 3


def test_transient_errors_retry_then_give_up(scripted: Rig, script: Script, tmp_path: Path) -> None:
    script.handlers = [error(503, "ServiceUnavailable")]
    batch = _submit(scripted, tmp_path, 2)
    chunk = scripted.enqueuer.chunk_messages.popleft()
    with pytest.raises(RetryChunk):
        scripted.service.process_chunk(*chunk)
    # The client tried 3 times per attempt, the task 2 attempts: nothing was processed.
    assert script.calls == 6
    assert not scripted.store.claims(batch)
    assert scripted.api.status(batch).remaining == 2
    # Celery retries the chunk; on the last retry the item fails with the last error.
    assert scripted.service.process_chunk(*chunk, give_up=True) is ChunkOutcome.COMPLETED
    failed = _detail(scripted, batch, ItemStatus.FAILED)
    assert {f["code"] for f in failed} == {"ServiceUnavailable"}


def test_throttling_is_retried_and_not_billed_twice(
    scripted: Rig, script: Script, tmp_path: Path
) -> None:
    script.handlers = [error(403, "Throttling.Api"), ok()]
    batch = _submit(scripted, tmp_path, 2)
    scripted.run_queue()
    assert script.calls == 3
    assert scripted.api.status(batch).counts[ItemStatus.DONE] == 2


def test_a_day_long_retry_after_pauses_an_item_no_longer_than_the_cap(
    redis_url: str, s3_endpoint: str, emulator: EmulatorHandle, script: Script, tmp_path: Path
) -> None:
    def throttled(request: httpx.Request) -> httpx.Response:
        body = {"RequestId": "R429", "Code": "Throttling.Api", "Message": "slow down"}
        return httpx.Response(403, json=body, headers={"x-acs-retry-after": "86400000"})

    script.handlers = [throttled, throttled, throttled, ok()]
    rigs = build_rig(
        redis_url,
        s3_endpoint,
        emulator,
        transport=httpx.MockTransport(script),
        max_retry_after_s=0.05,
    )
    rig = next(rigs)
    pauses: list[float] = []
    try:
        rig.service._sleep = pauses.append
        batch = _submit(rig, tmp_path, 1)
        rig.run_queue()
        assert rig.api.status(batch).counts[ItemStatus.DONE] == 1
    finally:
        rigs.close()
    assert pauses  # the item waited once between its attempts...
    assert max(pauses) <= 10.0  # ...the backoff, not the day the provider asked for


def test_a_lost_answer_makes_the_item_uncertain(
    scripted: Rig, script: Script, tmp_path: Path
) -> None:
    script.handlers = [timeout, ok()]
    batch = _submit(scripted, tmp_path, 2)
    scripted.run_queue()
    assert script.calls == 2  # the timed-out call is never repeated automatically
    progress = scripted.api.status(batch)
    assert progress.counts[ItemStatus.UNCERTAIN] == 1
    assert progress.counts[ItemStatus.DONE] == 1
    [row] = _detail(scripted, batch, ItemStatus.UNCERTAIN)
    assert row["row"] == 1
    assert "HttpTimeout" in row["reason"]
    claims = scripted.store.claims(batch)
    assert list(claims) == [row["item_id"]]  # kept as evidence


def test_forbidden_pauses_once_and_alerts(scripted: Rig, script: Script, tmp_path: Path) -> None:
    script.handlers = [error(403, "Forbidden.RAMUserAccessDenied")]
    batch = _submit(scripted, tmp_path, 25)
    assert scripted.run_queue() == [ChunkOutcome.STOPPED] * 3
    assert script.calls == 1
    progress = scripted.api.status(batch)
    assert progress.state is BatchState.PAUSED
    assert progress.counts[ItemStatus.FAILED] == 0
    counters = RedisMetrics(scripted.redis).snapshot()
    assert counters['idv_batch_paused_total{reason="Forbidden.RAMUserAccessDenied"}'] == 1
    assert counters['idv_account_errors_total{code="Forbidden.RAMUserAccessDenied",flow="batch"}']
    # Announced once, as paused by the provider (the webhook's batch.paused event).
    [notice] = scripted.enqueuer.notices
    assert (notice.type, notice.subject) == ("batch.paused", batch)
    assert notice.data["paused_by"] == "provider"
    assert (
        notice.data["pause_reason"] == "provider refused the account: Forbidden.RAMUserAccessDenied"
    )


def test_a_pause_stops_items_already_waiting_for_their_slot(
    scripted: Rig, script: Script, tmp_path: Path
) -> None:
    batch = _submit(scripted, tmp_path, 5)

    def pause_then_answer(request: httpx.Request) -> httpx.Response:
        # The operator pauses while this call is in flight: the next item, already past its
        # checks, must not leave.
        scripted.api.pause(batch)
        return ok()(request)

    script.handlers = [pause_then_answer, ok()]
    assert scripted.run_queue() == [ChunkOutcome.STOPPED]
    assert script.calls == 1
    assert scripted.api.status(batch).counts[ItemStatus.DONE] == 1
    scripted.api.resume(batch)
    scripted.run_queue()
    assert script.calls == 5
    assert scripted.api.status(batch).state is BatchState.COMPLETED


class RecordingGate:
    """A ``RateGate`` that lets every call through and remembers who asked, and how."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, CallContext]] = []
        self.feedback_calls: list[bool] = []

    def acquire(self, product_code: str, api: str, ctx: CallContext) -> None:
        self.asked.append((product_code, api, ctx))

    def feedback(
        self, product_code: str, api: str, *, throttled: bool, sent_at: float | None = None
    ) -> None:
        self.feedback_calls.append(throttled)


def test_every_call_takes_a_bulk_lane_slot_without_a_short_deadline(
    redis_url: str, s3_endpoint: str, emulator: EmulatorHandle, tmp_path: Path
) -> None:
    gate = RecordingGate()
    for rig in build_rig(redis_url, s3_endpoint, emulator, gate=gate):
        _submit(rig, tmp_path, 3)
        rig.run_queue()
        assert rig.served() == 3
    assert [(p, a) for p, a, _ in gate.asked] == [("ID_OCR_MIN", "DocOcrV2")] * 3
    # Bulk lane, and no deadline of its own: the limiter's bulk horizon (days) ranks it
    # behind onboarding work (minutes), so the batch only takes slots nobody urgent needs.
    assert all(ctx.lane is Lane.BULK and ctx.deadline is None for _, _, ctx in gate.asked)
    assert gate.feedback_calls == [False] * 3
