"""Adoption: a chunk whose holder died runs between two rows of a chunk another process runs
(``BatchService.adopt``), rather than waiting in the bulk queue until some process finished a
whole chunk. In process, on the real servers: the takeover runs from inside a provider call,
as the heartbeat thread would run it in the middle of a chunk."""

from __future__ import annotations

import time
from pathlib import Path

from tests.fixtures.batch import Hooked, Rig
from worker.batch import ChunkOutcome, ItemStatus
from worker.batch.takeover import BatchTakeover, chunk_member
from worker.emulator.samples import generate_samples
from worker.keys import RedisKeys
from worker.stores import DueIndex, Heartbeat

ROWS, SIZE = 30, 10  # chunks 0, 1, 2


def _submit(rig: Rig, tmp_path: Path) -> str:
    generate_samples(tmp_path / "s", ROWS, seed=4)
    batch_id = rig.api.submit(tmp_path / "s" / "manifest.jsonl").batch_id
    rig.enqueuer.chunk_messages.clear()
    return batch_id


def _orphan(rig: Rig, batch_id: str, chunk_no: int) -> None:
    """A worker took ``chunk_no`` and died: its lease runs out unreleased."""
    assert rig.store.acquire_chunk(batch_id, chunk_no, "dead", 0.05) == 1
    time.sleep(0.1)


def _beat(rig: Rig, adopter: object | None) -> Heartbeat:
    index = DueIndex(rig.redis, RedisKeys(rig.settings.redis.namespace))
    beat = Heartbeat(index, every_s=0.5)
    BatchTakeover(rig.control, index, adopter=adopter).register(beat)  # type: ignore[arg-type]
    return beat


def _due_now(beat: Heartbeat, batch_id: str, chunk_no: int) -> None:
    beat.index.schedule(chunk_member(batch_id, chunk_no), time.time() - 1)


def _done(rig: Rig, batch_id: str, chunk_no: int) -> bool:
    statuses = rig.store.statuses(batch_id, chunk_no * SIZE, SIZE)
    return all(s is ItemStatus.DONE for s in statuses)


def test_a_dead_holders_chunk_runs_between_two_rows_of_a_running_chunk(
    rig: Rig, hooked: Hooked, tmp_path: Path
) -> None:
    batch_id = _submit(rig, tmp_path)
    _orphan(rig, batch_id, 1)
    beat = _beat(rig, rig.service)

    def takeover() -> None:  # the heartbeat, in the middle of chunk 0
        _due_now(beat, batch_id, 1)
        assert beat.scan() == 1

    hooked.at[3] = takeover
    assert rig.service.process_chunk(batch_id, 0) is ChunkOutcome.COMPLETED
    assert _done(rig, batch_id, 0)
    assert _done(rig, batch_id, 1)
    assert not _done(rig, batch_id, 2)
    # Adopted here: no message for it, no offer to other workers, nobody holds it now.
    assert list(rig.enqueuer.chunk_messages) == []
    assert rig.store.take_orphan() is None
    assert rig.redis.hget(rig.store.keys(batch_id).cl, "1") is None
    assert rig.served() == 2 * SIZE


def test_adopted_as_the_running_chunk_ends_it_still_runs(
    rig: Rig, hooked: Hooked, tmp_path: Path
) -> None:
    batch_id = _submit(rig, tmp_path)
    _orphan(rig, batch_id, 2)
    beat = _beat(rig, rig.service)

    def takeover() -> None:  # during the last row of chunk 0
        _due_now(beat, batch_id, 2)
        beat.scan()

    hooked.at[SIZE] = takeover
    assert rig.service.process_chunk(batch_id, 0) is ChunkOutcome.COMPLETED
    assert _done(rig, batch_id, 2)
    assert list(rig.enqueuer.chunk_messages) == []


def test_a_process_running_no_chunk_offers_it_and_sends_a_message(rig: Rig, tmp_path: Path) -> None:
    batch_id = _submit(rig, tmp_path)
    _orphan(rig, batch_id, 1)
    beat = _beat(rig, rig.service)
    _due_now(beat, batch_id, 1)
    assert rig.service.adopt(batch_id, 1) is False  # runs no chunk
    assert beat.scan() == 1
    assert list(rig.enqueuer.chunk_messages) == [(batch_id, 1)]
    assert rig.store.take_orphan() == (batch_id, 1)
    assert rig.store.take_orphan() is None


def test_an_offered_chunk_is_adopted_by_a_process_running_a_chunk(
    rig: Rig, hooked: Hooked, tmp_path: Path
) -> None:
    batch_id = _submit(rig, tmp_path)
    _orphan(rig, batch_id, 1)
    rig.store.offer_orphan(batch_id, 1)
    rig.service.adopt_offered()  # runs no chunk: the offer stays for another
    assert rig.redis.llen(rig.store.orphans_key) == 1
    hooked.at[2] = rig.service.adopt_offered  # its heartbeat tick, mid-chunk
    assert rig.service.process_chunk(batch_id, 0) is ChunkOutcome.COMPLETED
    assert _done(rig, batch_id, 1)
    assert rig.redis.llen(rig.store.orphans_key) == 0


def test_one_adoption_at_a_time_and_none_from_an_adopted_chunk(
    rig: Rig, hooked: Hooked, tmp_path: Path
) -> None:
    batch_id = _submit(rig, tmp_path)
    answers: list[bool] = []
    hooked.at[2] = lambda: answers.extend(
        [rig.service.adopt(batch_id, 1), rig.service.adopt(batch_id, 2)]
    )
    # Chunk 1 runs from the next row on: the 5th call is its third row (two chunks running).
    hooked.at[5] = lambda: answers.append(rig.service.adopt(batch_id, 2))
    assert rig.service.process_chunk(batch_id, 0) is ChunkOutcome.COMPLETED
    assert answers == [True, False, False]
    assert _done(rig, batch_id, 1)
    assert not _done(rig, batch_id, 2)
    assert rig.service.adopt(batch_id, 2) is False  # ended: runs nothing now


def test_a_handed_on_chunk_is_sent_again_not_adopted(
    rig: Rig, hooked: Hooked, tmp_path: Path
) -> None:
    batch_id = _submit(rig, tmp_path)
    # Handed on (lease released), its message late: no holder died, so nobody adopts it.
    assert rig.store.acquire_chunk(batch_id, 1, "yielded", 5) == 1
    rig.store.release_chunk(batch_id, 1, "yielded", "requeue")
    beat = _beat(rig, rig.service)

    def due() -> None:
        _due_now(beat, batch_id, 1)
        assert beat.scan() == 1

    hooked.at[2] = due
    rig.service.process_chunk(batch_id, 0)
    assert not _done(rig, batch_id, 1)
    assert list(rig.enqueuer.chunk_messages) == [(batch_id, 1)]
    assert rig.store.take_orphan() is None


def test_a_live_lease_is_neither_adopted_nor_sent(rig: Rig, tmp_path: Path) -> None:
    batch_id = _submit(rig, tmp_path)
    assert rig.store.acquire_chunk(batch_id, 1, "alive", 30) == 1
    beat = _beat(rig, rig.service)
    _due_now(beat, batch_id, 1)
    assert beat.scan() == 1
    assert list(rig.enqueuer.chunk_messages) == []
    assert rig.store.take_orphan() is None
    assert rig.store.redrive_chunk(batch_id, 1) == 0


def test_redrive_tells_a_dead_holder_from_a_released_chunk(rig: Rig, tmp_path: Path) -> None:
    batch_id = _submit(rig, tmp_path)
    _orphan(rig, batch_id, 0)
    assert rig.store.redrive_chunk(batch_id, 0) == 2  # expired, unreleased
    assert rig.store.redrive_chunk(batch_id, 1) == 1  # never held
    assert rig.store.acquire_chunk(batch_id, 2, "t", 5) == 1
    rig.store.release_chunk(batch_id, 2, "t", "done")
    assert rig.store.redrive_chunk(batch_id, 2) == -1  # complete


def test_malformed_offers_are_dropped(rig: Rig) -> None:
    rig.redis.rpush(rig.store.orphans_key, "no-number", ":7", "b:x")
    rig.store.offer_orphan("b1", 3)
    assert rig.store.take_orphan() == ("b1", 3)
    assert rig.store.take_orphan() is None


def test_a_row_retrying_a_throttle_lets_the_adopted_chunk_go_first(
    rig: Rig, hooked: Hooked, tmp_path: Path
) -> None:
    batch_id = _submit(rig, tmp_path)
    pending: list[bool] = []
    # Chunk 0's third row is throttled just as chunk 1 is adopted: rather than wait out its
    # backoff, the row (its claim dropped) waits until adopted chunk 1 has run.
    hooked.at[3] = lambda: pending.append(rig.service.adopt(batch_id, 1))
    hooked.throttled.update({3, 4, 5})  # every attempt of the client's own
    # Calls 6 to 15 are chunk 1's; the 16th is the throttled row again.
    hooked.at[6 + SIZE] = lambda: pending.append(
        _done(rig, batch_id, 1) and rig.store.statuses(batch_id, 2, 1) == [ItemStatus.PENDING]
    )
    assert rig.service.process_chunk(batch_id, 0) is ChunkOutcome.COMPLETED
    assert pending == [True, True]
    assert _done(rig, batch_id, 0)
    assert _done(rig, batch_id, 1)
    assert hooked.calls == 2 * SIZE + 3  # the refused calls, then each row once
    assert rig.served() == 2 * SIZE


def test_a_chunk_task_runs_an_offered_chunk_before_its_own(
    rig: Rig, hooked: Hooked, tmp_path: Path
) -> None:
    batch_id = _submit(rig, tmp_path)
    _orphan(rig, batch_id, 2)
    rig.store.offer_orphan(batch_id, 2)
    seen: list[tuple[bool, bool]] = []
    hooked.at[SIZE + 1] = lambda: seen.append(
        (_done(rig, batch_id, 2), any(s is ItemStatus.DONE for s in
                                      rig.store.statuses(batch_id, 0, SIZE)))
    )  # fmt: skip
    assert rig.service.process_chunk(batch_id, 0) is ChunkOutcome.COMPLETED
    assert seen == [(True, False)]  # chunk 2 done before chunk 0's first row
    assert _done(rig, batch_id, 0)


def test_an_adopted_chunk_of_a_batch_that_is_gone_leaves_the_running_chunk_alone(
    rig: Rig, hooked: Hooked, tmp_path: Path
) -> None:
    batch_id = _submit(rig, tmp_path)
    answers: list[bool] = []
    hooked.at[2] = lambda: answers.append(rig.service.adopt("gone0batch", 0))
    assert rig.service.process_chunk(batch_id, 0) is ChunkOutcome.COMPLETED
    assert answers == [True]
    assert _done(rig, batch_id, 0)
