"""Room for the latency lanes: in a worker consuming them beside the bulk lane, a process
running a chunk hands it on after the current row when a realtime or webhook message has waited
for a process (``worker.wiring.room``); one process per lane per hold, never without a chunk
running, never for a message that just arrived. On the real servers, in process."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.batch import Hooked, Rig
from worker.batch import ChunkOutcome, ItemStatus
from worker.emulator.samples import generate_samples
from worker.observability.broker import ENQUEUED_AT, priority_keys
from worker.queues import QUEUE_ARCHIVAL, QUEUE_BULK, QUEUE_REALTIME, QUEUE_WEBHOOKS
from worker.wiring.room import LaneRoom, latency_lanes_beside_bulk

SIZE = 10


def _submit(rig: Rig, tmp_path: Path) -> str:
    generate_samples(tmp_path / "s", 2 * SIZE, seed=8)
    batch_id = rig.api.submit(tmp_path / "s" / "manifest.jsonl").batch_id
    rig.enqueuer.chunk_messages.clear()
    return batch_id


def _waiting(rig: Rig, queue: str, age_s: float | None, *, key: str | None = None) -> None:
    """A message in ``queue`` (kombu's list) that was sent ``age_s`` ago (None: no stamp)."""
    headers = {} if age_s is None else {ENQUEUED_AT: time.time() - age_s}
    rig.redis.lpush(key or queue, json.dumps({"headers": headers, "body": ""}))


def _room(rig: Rig, lanes: tuple[str, ...] = (QUEUE_REALTIME, QUEUE_WEBHOOKS)) -> LaneRoom:
    namespace = rig.settings.redis.namespace
    return LaneRoom(rig.redis, rig.redis, namespace, lanes, rig.service, hold_s=5.0)


@pytest.fixture(autouse=True)
def _clean_lanes(rig: Rig) -> Iterator[None]:
    def drop() -> None:
        for queue in (QUEUE_REALTIME, QUEUE_WEBHOOKS, QUEUE_ARCHIVAL):
            rig.redis.delete(*priority_keys(queue), f"{rig.settings.redis.namespace}room:{queue}")

    drop()
    yield
    drop()


def test_a_waiting_realtime_message_makes_the_chunk_hand_on(
    rig: Rig, hooked: Hooked, tmp_path: Path
) -> None:
    batch_id = _submit(rig, tmp_path)
    _waiting(rig, QUEUE_REALTIME, 3.0)
    room, other = _room(rig), _room(rig)
    made: list[bool] = []
    hooked.at[3] = lambda: made.extend([room.tick(), other.tick()])
    assert rig.service.process_chunk(batch_id, 0) is ChunkOutcome.YIELDED
    assert made == [True, False]  # one process per lane and hold
    statuses = rig.store.statuses(batch_id, 0, SIZE)
    assert statuses.count(ItemStatus.DONE) == 3  # the row under way, then handed on
    assert list(rig.enqueuer.chunk_messages) == [(batch_id, 0)]
    # The next chunk of this process starts afresh: the request was for that one.
    assert rig.service.process_chunk(batch_id, 1) is ChunkOutcome.COMPLETED


@pytest.mark.parametrize(
    ("queue", "age_s", "made"),
    [
        (QUEUE_REALTIME, 0.2, False),  # just arrived: an idle process may take it
        (QUEUE_REALTIME, None, True),  # published elsewhere, no stamp: counts as waiting
        (QUEUE_WEBHOOKS, 3.0, True),
        (QUEUE_ARCHIVAL, 3.0, False),  # not a latency lane
    ],
)
def test_which_waiting_messages_make_room(
    rig: Rig, hooked: Hooked, tmp_path: Path, queue: str, age_s: float | None, made: bool
) -> None:
    batch_id = _submit(rig, tmp_path)
    _waiting(rig, queue, age_s)
    room = _room(rig)
    seen: list[bool] = []
    hooked.at[2] = lambda: seen.append(room.tick())
    outcome = rig.service.process_chunk(batch_id, 0)
    assert seen == [made]
    assert outcome is (ChunkOutcome.YIELDED if made else ChunkOutcome.COMPLETED)


def test_a_message_in_a_priority_list_counts(rig: Rig, hooked: Hooked, tmp_path: Path) -> None:
    batch_id = _submit(rig, tmp_path)
    _waiting(rig, QUEUE_REALTIME, 3.0, key=priority_keys(QUEUE_REALTIME)[2])
    room = _room(rig)
    hooked.at[2] = room.tick
    assert rig.service.process_chunk(batch_id, 0) is ChunkOutcome.YIELDED


def test_no_chunk_running_no_room_made(rig: Rig) -> None:
    _waiting(rig, QUEUE_REALTIME, 3.0)
    assert _room(rig).tick() is False
    rig.service.make_room()  # nothing runs: nothing is remembered for the next chunk
    assert rig.redis.get(f"{rig.settings.redis.namespace}room:{QUEUE_REALTIME}") is None


def test_room_is_not_remembered_past_the_chunk(rig: Rig, hooked: Hooked, tmp_path: Path) -> None:
    batch_id = _submit(rig, tmp_path)
    hooked.at[SIZE] = rig.service.make_room  # during the last row: the chunk completes anyway
    assert rig.service.process_chunk(batch_id, 0) is ChunkOutcome.COMPLETED
    assert rig.service.process_chunk(batch_id, 1) is ChunkOutcome.COMPLETED


def test_lanes_made_room_for_only_beside_bulk() -> None:
    assert latency_lanes_beside_bulk([QUEUE_REALTIME, QUEUE_BULK]) == (QUEUE_REALTIME,)
    assert latency_lanes_beside_bulk([QUEUE_BULK, QUEUE_WEBHOOKS, QUEUE_REALTIME]) == (
        QUEUE_REALTIME,
        QUEUE_WEBHOOKS,
    )
    assert latency_lanes_beside_bulk([QUEUE_REALTIME, QUEUE_WEBHOOKS]) == ()  # no chunks here
    assert latency_lanes_beside_bulk([QUEUE_BULK, QUEUE_ARCHIVAL]) == ()


def test_a_process_with_an_adopted_chunk_leaves_the_room_to_another(
    rig: Rig, hooked: Hooked, tmp_path: Path
) -> None:
    batch_id = _submit(rig, tmp_path)
    _waiting(rig, QUEUE_REALTIME, 3.0)
    room = _room(rig)
    seen: list[bool] = []

    def adopted_then_asked() -> None:
        seen.append(rig.service.adopt(batch_id, 1))
        seen.append(room.tick())  # a dead worker's chunk is never handed back for room

    hooked.at[2] = adopted_then_asked
    hooked.at[5] = lambda: seen.append(room.tick())  # chunk 1 runs inside chunk 0 now
    assert rig.service.process_chunk(batch_id, 0) is ChunkOutcome.COMPLETED
    assert seen == [True, False, False]
    assert rig.redis.get(f"{rig.settings.redis.namespace}room:{QUEUE_REALTIME}") is None
    statuses = rig.store.statuses(batch_id, 0, 2 * SIZE)
    assert statuses.count(ItemStatus.DONE) == 2 * SIZE
