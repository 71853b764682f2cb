"""Retention on the emulated clock, the per-call counters and the callback drop fault."""

from __future__ import annotations

import asyncio

from worker.emulator.calls import CallLog
from worker.emulator.clock import EmulatedClock
from worker.emulator.config import EmulatorConfig
from worker.emulator.state import EmulatorState
from worker.emulator.transactions import Transaction, TransactionStore

DAY = 86400.0


class Real:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def tx(tid: str, at: float, callback_url: str | None = None) -> Transaction:
    return Transaction(
        transaction_id=tid,
        product_code="eKYC",
        merchant_biz_id="b1",
        merchant_user_id="u1",
        created_at=at,
        callback_url=callback_url,
    )


def test_store_purges_past_retention_counted_from_completion() -> None:
    store = TransactionStore(retention=30 * DAY)
    never_done, done = tx("a", 0), tx("b", 0)
    store.add(never_done)
    store.add(done)
    done.completed_at = 5 * DAY
    store.completed(done)
    assert store.purge(30 * DAY) == []
    assert store.purge(30 * DAY + 1) == ["a"]
    assert (len(store), store.deleted) == (1, 1)
    # The creation deadline of "b" passed, but its completion re-armed it.
    assert store.purge(34 * DAY) == []
    assert store.purge(35 * DAY + 1) == ["b"]
    assert (len(store), store.deleted) == (0, 2)


def test_state_purges_on_its_own_clock() -> None:
    real = Real()
    state = EmulatorState(EmulatorConfig(), clock=EmulatedClock(real))
    item = tx("c", state.clock.now())
    state.store.add(item)
    item.completed_at = state.clock.now()
    state.store.completed(item)
    state.clock.advance(30 * DAY)
    assert state.purge() == 0
    real.t += 1.5  # real time moves the emulated clock too
    assert state.purge() == 1
    assert state.stats()["transactions"] == {"count": 0, "completed": 0, "deleted": 1}


def test_call_log_splits_check_result_by_return_image() -> None:
    log = CallLog()
    log.record("CheckResult", {"TransactionId": "t1", "IsReturnImage": "Y"}, "success")
    log.record("CheckResult", {"TransactionId": "t1"}, "success")
    log.record("CheckResult", {"TransactionId": "t1", "IsReturnImage": "N"}, "throttled")
    log.record("DocOcrV2", {"MerchantBizId": "m1"}, "success")
    log.record("DocOcrV2", {"MerchantBizId": "m1"}, "error")
    log.record("Initialize", {"MerchantBizId": "m1"}, "success")
    log.record("DocOcrV2", {}, "error")
    assert log.check_result_of("t1") == {
        "Y": {"calls": 1, "success": 1, "throttled": 0, "errors": 0},
        "N": {"calls": 2, "success": 1, "throttled": 1, "errors": 0},
    }
    assert log.doc_ocr_of("m1") == {"calls": 2, "success": 1, "throttled": 0, "errors": 1}
    assert log.doc_ocr_of("unknown")["calls"] == 0
    assert set(log.snapshot()["DocOcrV2"]) == {"m1"}


async def _drops(share: float, seed: int, count: int) -> list[bool]:
    state = EmulatorState(EmulatorConfig())
    state.set_faults({"drop_callbacks": share, "drop_callbacks_seed": seed})
    items = [tx(f"t{i}", 0, "http://127.0.0.1:9/cb") for i in range(count)]
    for item in items:
        item.passed, item.sub_code = "Y", "200"
        state.send_callback(item, wanted=True)
    await state.close()
    assert state.callbacks.stats.dropped == sum(i.callback_state == "dropped" for i in items)
    return [item.callback_state == "dropped" for item in items]


def test_callback_drops_are_a_seeded_sequence() -> None:
    first = asyncio.run(_drops(0.25, 42, 400))
    assert asyncio.run(_drops(0.25, 42, 400)) == first
    assert asyncio.run(_drops(0.25, 43, 400)) != first
    assert 60 <= sum(first) <= 140
    assert not any(asyncio.run(_drops(0.0, 42, 50)))
    assert all(asyncio.run(_drops(1.0, 42, 50)))


def test_unwanted_callbacks_are_suppressed_not_sent() -> None:
    async def run() -> tuple[str, str, int]:
        state = EmulatorState(EmulatorConfig())
        silent, no_url = tx("s", 0, "http://127.0.0.1:9/cb"), tx("n", 0)
        state.send_callback(silent, wanted=False)
        state.send_callback(no_url, wanted=True)
        await state.close()
        return silent.callback_state, no_url.callback_state, state.callbacks.stats.scheduled

    assert asyncio.run(run()) == ("suppressed", "none", 0)
