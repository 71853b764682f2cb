"""Takeover in seconds, with real Celery workers: a SIGKILLed worker's chunk runs elsewhere
within 10 s (its lease is renewed by a heartbeat and indexed by expiry; another worker's
heartbeat re-drives it), nothing is billed twice, nothing is lost; a chunk retry scheduled as
a due time survives the loss of the worker that scheduled it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.batch import Rig
from tests.fixtures.e2e import E2EServers, E2EStack
from tests.fixtures.emulator import EmulatorHandle
from tests.fixtures.servers import wait_until
from tests.fixtures.workers import CeleryWorker
from worker.app import create_app
from worker.batch import BatchState, ItemStatus
from worker.batch.takeover import BatchTakeover, chunk_member
from worker.emulator.samples import generate_samples
from worker.flows import batches
from worker.keys import RedisKeys
from worker.ledger import FINAL_STATES
from worker.queues import QUEUE_BULK, QUEUE_REALTIME
from worker.stores import DueIndex, Heartbeat
from worker.wiring import Cli

ROWS, QUOTA = 150, 15
BULK = ("idv.bulk",)


@pytest.fixture(scope="module")
def stack(e2e_servers: E2EServers) -> Iterator[E2EStack]:
    with e2e_servers.open(
        E2EStack,
        "takeover",
        IDV_QUOTAS=f"ID_OCR_MIN={QUOTA}",
        IDV_BATCH_CHUNK_SIZE=str(ROWS),  # one chunk: whoever holds it holds the whole batch
        IDV_LIMITER_MAX_WAIT_S="20",  # longer than the lease: the heartbeat keeps it alive
        IDV_READ_TIMEOUT="4",
    ) as opened:
        yield opened


def _holder(stack: E2EStack, batch_id: str, chunk_no: int = 0) -> str | None:
    raw = stack.redis.hget(f"idv:{{batch:{batch_id}}}:cl", str(chunk_no))
    return None if raw is None else raw.decode().partition("|")[0]


@pytest.mark.serial  # asserts a rate / a time bound: not beside other tests
def test_a_killed_workers_chunk_runs_elsewhere_within_ten_seconds(
    stack: E2EStack, emulator: EmulatorHandle, tmp_path: Path
) -> None:
    emulator.set_quotas({"ID_OCR_MIN": QUOTA})
    generate_samples(tmp_path / "s", ROWS, seed=5)
    first = stack.worker("first", queues=BULK, concurrency=1)
    first.wait_ready()
    second: CeleryWorker | None = None
    try:
        with batches(stack.settings) as api:
            batch_id = api.submit(tmp_path / "s" / "manifest.jsonl").batch_id
            wait_until(lambda: api.status(batch_id).processed >= 20, timeout=60, interval=0.1)
            second = stack.worker("second", queues=BULK, concurrency=1)
            second.wait_ready()
            held_by = _holder(stack, batch_id)
            assert held_by is not None
            first.kill()  # SIGKILL: its message stays unacknowledged, its lease unreleased
            killed = time.monotonic()
            wait_until(
                lambda: _holder(stack, batch_id) not in (None, held_by), timeout=30, interval=0.1
            )
            taken_over_s = time.monotonic() - killed
            assert api.status(batch_id).processed < ROWS, "finished before the takeover"
            final = api.wait(batch_id, timeout=120)
    finally:
        for worker in (first, second):
            if worker is not None:
                worker.stop()
    assert taken_over_s <= 10.0, f"took {taken_over_s:.1f}s\n{stack.logs()}"
    assert final.state is BatchState.COMPLETED
    counts = final.counts
    uncertain = counts.get(ItemStatus.UNCERTAIN, 0)
    done = counts.get(ItemStatus.DONE, 0)
    served = emulator.stats()["actions"]["DocOcrV2"]["ID_OCR_MIN"]["served"]
    # None lost; at most the one call in flight at the kill is uncertain (never re-sent).
    assert done + uncertain + counts.get(ItemStatus.INVALID, 0) == ROWS
    assert uncertain <= 1
    # None billed twice: the provider served each item at most once.
    assert done <= served <= done + uncertain


@pytest.mark.serial  # asserts a time bound: not beside other tests
def test_a_killed_workers_chunk_is_adopted_while_every_worker_is_busy(
    stack: E2EStack, emulator: EmulatorHandle, tmp_path: Path
) -> None:
    # Two chunks, two single-process workers, each busy with one for ~20 s: sent as a message,
    # the dead worker's chunk would wait until the survivor finished its own.
    emulator.set_quotas({"ID_OCR_MIN": QUOTA})
    generate_samples(tmp_path / "s", 2 * ROWS, seed=6)
    workers = [stack.worker(name, queues=BULK, concurrency=1) for name in ("a", "b")]
    for worker in workers:
        worker.wait_ready()
    try:
        with batches(stack.settings) as api:
            batch_id = api.submit(tmp_path / "s" / "manifest.jsonl").batch_id
            wait_until(
                lambda: None not in (_holder(stack, batch_id, 0), _holder(stack, batch_id, 1)),
                timeout=30,
                interval=0.1,
            )
            wait_until(lambda: api.status(batch_id).processed >= 20, timeout=60, interval=0.1)
            before = {n: _holder(stack, batch_id, n) for n in (0, 1)}
            workers[0].kill()
            killed = time.monotonic()

            def moved() -> list[int]:
                return [n for n in (0, 1) if _holder(stack, batch_id, n) not in (None, before[n])]

            wait_until(lambda: moved(), timeout=30, interval=0.1)
            taken_over_s = time.monotonic() - killed
            orphan = moved()[0]
            survivor = 1 - orphan
            # The survivor still holds (and works through) its own chunk meanwhile.
            assert _holder(stack, batch_id, survivor) == before[survivor]
            assert api.status(batch_id).processed < 2 * ROWS - 20, "finished before the takeover"
            final = api.wait(batch_id, timeout=120)
    finally:
        for worker in workers:
            worker.stop()
    assert taken_over_s <= 10.0, f"took {taken_over_s:.1f}s\n{stack.logs()}"
    assert "adopted" in stack.logs(chars=10**7)
    assert final.state is BatchState.COMPLETED
    counts = final.counts
    uncertain = counts.get(ItemStatus.UNCERTAIN, 0)
    done = counts.get(ItemStatus.DONE, 0)
    assert done + uncertain + counts.get(ItemStatus.INVALID, 0) == 2 * ROWS
    assert uncertain <= 1


@pytest.mark.serial  # asserts a time bound: not beside other tests
def test_a_worker_running_a_chunk_makes_room_for_a_waiting_onboarding_run(
    stack: E2EStack, emulator: EmulatorHandle, tmp_path: Path
) -> None:
    # One process consuming both lanes, busy with a ~10 s chunk: the onboarding run must not
    # wait for the chunk to end (the chunk hands its rest on after the current row).
    emulator.set_quotas({"ID_OCR_MIN": QUOTA})
    generate_samples(tmp_path / "s", 2 * ROWS, seed=7)
    worker = stack.worker("mixed", queues=(QUEUE_REALTIME, QUEUE_BULK), concurrency=1)
    worker.wait_ready()
    biz = "room0001"
    try:
        with (
            Cli(stack.settings, app=create_app(stack.settings)) as cli,
            batches(stack.settings) as api,
        ):
            batch_id = api.submit(tmp_path / "s" / "manifest.jsonl").batch_id
            wait_until(lambda: api.status(batch_id).processed >= 15, timeout=60, interval=0.1)
            tid = emulator.create_transaction("eKYC", merchant_biz_id=biz)
            assert cli.ledger.record_start(tid, "eKYC", biz)
            emulator.complete(tid)
            sent = time.monotonic()
            cli.intake().submit(
                {"transactionId": tid, "merchantBizId": biz, "passed": "Y", "subCode": "200"},
                verify_token=False,
            )

            def ended() -> bool:
                entry = cli.ledger.get(tid)
                return entry is not None and entry.state in FINAL_STATES

            wait_until(ended, timeout=60, interval=0.1)
            waited_s = time.monotonic() - sent
            assert api.status(batch_id).processed < 2 * ROWS - 20, "the batch had ended"
            final = api.wait(batch_id, timeout=120)
    finally:
        worker.stop()
    assert waited_s <= 6.0, f"the onboarding run waited {waited_s:.1f}s\n{stack.logs()}"
    assert final.state is BatchState.COMPLETED
    counts = final.counts
    assert counts.get(ItemStatus.DONE, 0) == 2 * ROWS


def test_a_retry_due_time_survives_the_worker_that_scheduled_it(rig: Rig, tmp_path: Path) -> None:
    generate_samples(tmp_path / "s", 20, seed=3)
    batch_id = rig.api.submit(tmp_path / "s" / "manifest.jsonl").batch_id
    rig.enqueuer.chunk_messages.clear()  # every message died with its node
    index = DueIndex(rig.redis, RedisKeys(rig.settings.redis.namespace))
    # A worker scheduled chunk 1's retry 30 s ahead, then died with its delayed message.
    rig.store.release_chunk(batch_id, 1, "gone", "requeue")
    index.schedule(chunk_member(batch_id, 1), time.time() + 30)
    now = [time.time()]
    beat = Heartbeat(index, every_s=0.5, clock=lambda: now[0])
    BatchTakeover(rig.control, index).register(beat)
    assert beat.scan() == 0  # not due yet
    assert not rig.enqueuer.chunk_messages
    now[0] += 31
    assert beat.scan() == 1
    assert list(rig.enqueuer.chunk_messages) == [(batch_id, 1)]
    # A chunk a live worker holds is left to it, even when its entry comes due.
    assert rig.store.acquire_chunk(batch_id, 0, "live", 3600) == 1
    index.schedule(chunk_member(batch_id, 0), now[0] - 1)
    assert beat.scan() == 1
    assert list(rig.enqueuer.chunk_messages) == [(batch_id, 1)]
