"""A billed call's claim no replica confirms (``IDV_REDIS_WAIT_REPLICAS`` on a Redis without
replicas): the request never leaves, and the item stays retryable, never uncertain."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.batch import Rig, build_rig, write_manifest
from tests.fixtures.emulator import EmulatorHandle
from worker.batch import ItemStatus, RetryChunk
from worker.emulator.samples import generate_samples


@pytest.fixture
def unconfirmed_rig(redis_url: str, s3_endpoint: str, emulator: EmulatorHandle) -> Iterator[Rig]:
    yield from build_rig(
        redis_url, s3_endpoint, emulator, redis_wait_replicas=1, redis_wait_timeout_ms=5
    )


def test_an_unconfirmed_claim_sends_nothing_and_leaves_the_item_pending(
    unconfirmed_rig: Rig, tmp_path: Path
) -> None:
    rig = unconfirmed_rig
    rows = [
        {"image": r.as_dict()["image"], "doc_type": r.as_dict()["doc_type"]}
        for r in generate_samples(tmp_path / "img", 3, seed=3)
    ]
    batch = rig.api.submit(write_manifest(tmp_path / "m.jsonl", rows)).batch_id
    served = rig.served()
    with pytest.raises(RetryChunk, match="replicas confirmed"):  # the task retries the chunk
        rig.service.process_chunk(batch, 0)
    assert rig.served() == served  # no DocOcrV2 reached the provider
    progress = rig.api.status(batch)
    assert progress.counts[ItemStatus.UNCERTAIN] == 0
    assert progress.counts[ItemStatus.DONE] == 0
    assert rig.store.claims(batch) == {}  # each refused claim was dropped again
